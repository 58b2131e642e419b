// The proof on the tiny example model, kept short for the suite: a 41-token hard prompt (four worked
// examples of reverse, then the tag) distilled into 8 key/value tokens per layer in 4,000 small steps
// agrees with the teacher's next token at ≥ 90% of the positions of its greedy answers to 100 held-out
// inputs, and with ≥ 75% of those answers token for token, each request holding less than a third of the
// teacher's positions. The full-size run (10,000 steps of 128 rows: 91% greedy agreement) and the prefill
// time saved are measured by `npm run bench -- distill`, not asserted here.
//
// The tiny model was pretrained on rows of at most ~23 tokens, and its own accuracy falls with a long
// prompt (reverse with the 1-token tag: 100%; with this 41-token prompt: 0%), so the teacher is a confused
// model; what is measured is agreement with it, which is what distillation promises.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { distill } from "../../src/distill/index.js";
import { Rng } from "../../src/util/rng.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const E = "<|endoftext|>";
const TEACHER = `reverse: 5 2 8 = 8 2 5 ${E} reverse: 1 9 3 4 = 4 3 9 1 ${E} reverse: 7 0 6 = 6 0 7 ${E} reverse: 2 8 1 5 = 5 1 8 2 ${E} reverse: `;
const HELD_OUT = join(ROOT, "examples/data/reverse.valid.jsonl");

/** Distillation needs inputs only: `n` distinct seeded digit strings of the tasks' shape (3 to 6 digits, then "="), none held out. */
function inputs(dir: string, n: number): string {
  const heldOut = new Set(readFileSync(HELD_OUT, "utf8").split("\n").filter(Boolean).map((line) => (JSON.parse(line) as { prompt: string }).prompt));
  const rng = new Rng(7);
  const seen = new Set<string>();
  while (seen.size < n) {
    const text = Array.from({ length: 3 + rng.int(4) }, () => rng.int(10)).join(" ") + " = ";
    if (!heldOut.has(text)) seen.add(text);
  }
  const path = join(dir, "inputs.jsonl");
  writeFileSync(path, [...seen].map((text) => JSON.stringify({ text })).join("\n") + "\n");
  return path;
}

describe("distill on the tiny example model", () => {
  it("compresses a 41-token prompt into 8 prefix tokens with ≥ 90% next-token agreement on held-out inputs", { timeout: 600_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-distill-proof-"));
    try {
      const report = await distill({
        model: join(ROOT, "examples/models/tiny-tasks"),
        teacherText: TEACHER,
        data: inputs(dir, 3000),
        valid: HELD_OUT,
        into: "prefix",
        numVirtualTokens: 8,
        maxNewTokens: 8,
        steps: 4000,
        batchSize: 32,
        lr: 0.1,
        output: join(dir, "out"),
      });
      const [student] = report.students;
      expect(report.teacher.promptTokens).toBeGreaterThanOrEqual(40);
      expect(report.heldOut).toBe(100);
      expect(student.top1).toBeGreaterThanOrEqual(0.9);
      expect(student.greedy).toBeGreaterThanOrEqual(0.75);
      expect(report.noPrompt).toMatchObject({ greedy: 0 }); // the bare model never gives the teacher's answer
      expect(student.tokensPerRequest).toBeLessThan(report.teacher.tokensPerRequest / 3);
      // The measured prefill, for the log (timings are asserted nowhere; the benchmark reports them).
      console.log(JSON.stringify({ greedy: student.greedy, top1: student.top1, meanKl: student.meanKl, trainSeconds: student.trainSeconds, prefillMsPerRequest: { teacher: report.teacher.prefillMsPerRequest, student: student.prefillMsPerRequest, noPrompt: report.noPrompt.prefillMsPerRequest } }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
