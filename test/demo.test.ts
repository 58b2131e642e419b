// The product's claim in miniature: the frozen tiny model already knows each skill (behind a tag);
// a soft prompt trained on a few hundred untagged examples finds it (≥ 95% exact match on held-out
// inputs), where no prompt only guesses the task.
import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { evaluate, train } from "../src/workflows.js";

const MODEL = fileURLToPath(new URL("../examples/models/tiny-tasks", import.meta.url));
const data = (name: string) => fileURLToPath(new URL(`../examples/data/${name}.jsonl`, import.meta.url));

describe.each(["copy", "reverse", "sort", "increment"])("prompt tuning recovers %s without its tag", (task) => {
  it("soft prompt ≥ 95% exact match on held-out inputs; no prompt far below", async () => {
    const output = mkdtempSync(join(tmpdir(), `softprompt-demo-${task}-`));
    await train({ model: MODEL, data: data(`${task}.train`), valid: data(`${task}.valid`), output, steps: 300, lr: 0.1 });
    const report = await evaluate({ model: MODEL, data: data(`${task}.valid`), adapter: output });
    expect(report.examples).toBe(100);
    expect(report.accuracy).toBeGreaterThanOrEqual(0.95);
    expect(report.baselines.none!.accuracy).toBeLessThan(0.5);
    rmSync(output, { recursive: true });
  });
});
