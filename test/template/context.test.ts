// Chat rows through a template: earlier turns (and a `context` field) fill {context} or, through the
// model's chat template, {chat}; when a row does not fit, the oldest turns go first (system turns stay)
// and the count is reported, never silently.
import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { train } from "../../src/workflows.js";
import type { DataTokenizer } from "../../src/data/tokenize.js";
import type { Example } from "../../src/data/index.js";
import { parseTemplate, renderPrompt, renderRows, tableLayout } from "../../src/template/index.js";

/** One id per character (a..z → 1..26, anything else 27), EOS 0; a chat template of role tags. */
const tokenizer: DataTokenizer = {
  encode: (text) => [...text].map((c) => (c >= "a" && c <= "z" ? c.charCodeAt(0) - 96 : 27)),
  eosTokenIds: [0],
  specialPrefixIds: [],
  applyChatTemplate: (turns, options) => turns.map((t) => `<${t.role}>${t.content}`).join("") + (options?.addGenerationPrompt ? "<assistant>" : ""),
};
const decode = (ids: number[]) => ids.map((id) => (id === 0 ? "$" : id === 27 ? "_" : String.fromCharCode(id + 96))).join("");

const chat: Example = {
  kind: "chat",
  source: { file: "chat.jsonl", line: 7 },
  fields: { context: "kb" },
  messages: [
    { role: "system", content: "sys" },
    { role: "user", content: "aa" },
    { role: "assistant", content: "bb" },
    { role: "user", content: "cc" },
    { role: "assistant", content: "dd" },
    { role: "user", content: "q" },
    { role: "assistant", content: "ans" },
  ],
};

function render(source: string, maxLength: number) {
  const template = parseTemplate(source);
  return renderRows({ template, layout: tableLayout(template, tokenizer.encode, new Map()) }, [chat], tokenizer, { maxLength });
}

describe("context inclusion", () => {
  it("{context} is the context field then the earlier turns; {input} the last user turn; {answer} the last reply", () => {
    const { items, droppedTurns } = render("{soft:2}{context}Q {input} A {answer}", 200);
    expect(droppedTurns).toBe(0);
    const written = items[0].inputIds.filter((_, t) => items[0].softIndex![t] < 0);
    // "kb\n", "role: content\n" per earlier turn, "Q q A " ("_" is any character but a..z), then the answer and EOS.
    expect(decode(written)).toBe("kb_system__sys_user__aa_assistant__bb_user__cc_assistant__dd___q___ans$");
    expect(decode(items[0].labels.filter((l) => l !== -100))).toBe("ans$");
  });

  it("drops the oldest earlier turns first (system kept) until the row fits, and counts them", () => {
    const full = render("{context}Q {input} A {answer}", 200).items[0].inputIds.length;
    const { items, droppedTurns } = render("{context}Q {input} A {answer}", full - 9);
    expect(droppedTurns).toBe(1); // "user: aa\n" (9 tokens) was the oldest
    expect(decode(items[0].inputIds)).toMatch(/^kb_system__sys_assistant__bb_user__cc/);
    expect(render("{context}Q {input} A {answer}", full - 10).droppedTurns).toBe(2);
  });

  it("{chat} renders the kept turns and the last user turn through the chat template with the generation prompt", () => {
    const { items, droppedTurns } = render("{chat}{answer}", 200);
    expect(droppedTurns).toBe(0);
    expect(decode(items[0].inputIds)).toBe(decode(tokenizer.encode("<system>sys<user>aa<assistant>bb<user>cc<assistant>dd<user>q<assistant>ans")) + "$");
  });

  it("a row that does not fit even without its earlier turns is an error naming its file and line", () => {
    expect(() => render("{context}Q {input} A {answer}", 12)).toThrow(/chat\.jsonl:7: the row through the template is \d+ tokens even with all 4 earlier turns dropped, more than maxLength 12/);
  });

  it("a chat that ends with a user turn renders for generation: every earlier turn is context, the last user turn the input", () => {
    const template = parseTemplate("{context}Q {input} A {answer}");
    const open: Example = { ...chat, messages: chat.messages.slice(0, -1) };
    const row = renderPrompt(template, tableLayout(template, tokenizer.encode, new Map()), open, tokenizer, { maxLength: 200 });
    expect(decode(row.inputIds)).toBe("kb_system__sys_user__aa_assistant__bb_user__cc_assistant__dd___q___");
  });

  it("train reports the dropped turns in its log and summary", async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-context-"));
    try {
      const turns = (i: number) => [{ role: "user", content: `${i} 1 2 =` }, { role: "assistant", content: `2 1 ${i}` }];
      const row = JSON.stringify({ messages: [...turns(3), ...turns(4), ...turns(5), ...turns(6)] });
      writeFileSync(join(dir, "chat.jsonl"), `${row}\n${row}\n`);
      writeFileSync(join(dir, "t.tmpl"), "{soft:2}{context}{input} {answer}");
      const log: string[] = [];
      const data = join(dir, "chat.jsonl");
      const summary = await train({ model: fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url)), data, valid: data, output: join(dir, "run"), template: join(dir, "t.tmpl"), steps: 1, maxLength: 30, onLog: (line) => log.push(line) });
      expect(summary.droppedTurns).toBeGreaterThan(0);
      expect(log.some((line) => line.includes(`${summary.droppedTurns} earlier chat turns (oldest first) were dropped so rows fit --max-length 30`))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
