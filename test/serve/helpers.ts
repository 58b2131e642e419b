// Shared by the serving tests: adapters trained here on the tiny example model (a few dozen steps),
// a copy of that model with a chat template, and bounded polling.
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { train } from "../../src/workflows.js";
import { loadAdapter, saveAdapter, BASE_FINGERPRINT } from "../../src/peft/adapter.js";

export const TINY = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
export const BIN = fileURLToPath(new URL("../../bin/softprompt.js", import.meta.url));
const data = (name: string) => fileURLToPath(new URL(`../../examples/data/${name}.jsonl`, import.meta.url));

/** Prompt-tuning adapters for two tasks (40 steps each: enough to tell them apart), in `dir`/<task>. */
export async function trainAdapters(dir: string, tasks: readonly string[] = ["reverse", "sort"]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const task of tasks) {
    out[task] = join(dir, task);
    await train({ model: TINY, data: data(`${task}.train`), valid: data(`${task}.valid`), output: out[task], steps: 40, lr: 0.1, numVirtualTokens: 8 });
  }
  return out;
}

/** The same adapter, but fingerprinted for another base model: what the registry and the server must refuse. */
export async function foreignAdapter(from: string, to: string): Promise<string> {
  const adapter = await loadAdapter(from);
  await saveAdapter(to, { ...adapter, metadata: { ...adapter.metadata, [BASE_FINGERPRINT]: "0".repeat(64) } });
  return to;
}

/** The tiny model with a chat template that writes the turns' contents one after another (so "3 1 4 = " as a user turn is the task's input). */
export function tinyWithChatTemplate(dir: string): string {
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(TINY)) copyFileSync(join(TINY, f), join(dir, f));
  writeFileSync(join(dir, "chat_template.jinja"), "{% for m in messages %}{{ m.content }}{% endfor %}");
  return dir;
}

/** Poll until `check` is true, every 50 ms, for at most `ms`. */
export async function eventually(check: () => Promise<boolean> | boolean, ms = 10_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}
