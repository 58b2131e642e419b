// The product's claim in miniature: the frozen tiny model already knows each skill (behind a tag);
// a soft prompt trained on a few hundred untagged examples finds it (≥ 95% exact match on held-out
// inputs), where no prompt only guesses the task. The README's demo (examples/demo.ts) shows all four
// prompts at once: one batch whose rows each use a different prompt.
import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { evaluate, train } from "../src/workflows.js";
import { MIXED_INPUT, printDemo, runDemo } from "../examples/demo.js";
import { completionText } from "../examples/tasks.js";

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

describe("npm run demo (examples/demo.ts)", () => {
  it("one batch mixing the four prompts gets every row's task right; soft ≥ 95%, no prompt far below; one screen", async () => {
    const outputDir = mkdtempSync(join(tmpdir(), "softprompt-demo-all-"));
    const result = await runDemo({ outputDir });
    expect(result.mixed.map((row) => row.prompt)).toEqual(["copy", "reverse", "sort", "increment", undefined]);
    for (const row of result.mixed.slice(0, 4)) {
      expect(row.output, row.prompt).toBe(completionText(row.prompt!, MIXED_INPUT));
      expect(row.right).toBe(true);
    }
    expect(result.comparison.map((c) => c.task)).toEqual(["copy", "reverse", "sort", "increment"]);
    for (const c of result.comparison) {
      expect(c.examples).toBe(100);
      expect(c.soft, c.task).toBeGreaterThanOrEqual(0.95);
      expect(c.none, c.task).toBeLessThan(0.5);
    }
    const lines: string[] = [];
    printDemo(result, (line) => lines.push(line));
    expect(lines.length).toBeLessThanOrEqual(30);
    rmSync(outputDir, { recursive: true });
  });
});
