// The proof on the tiny example model: a 41-token hard prompt (four worked examples of reverse, then the
// tag) distilled into 8 key/value tokens per layer keeps ≥ 90% greedy agreement with the teacher on 100
// held-out inputs, and a request's prefill is shorter. The slowest test here (minutes): 10,000 KL steps.
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

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const E = "<|endoftext|>";
const TEACHER = `reverse: 5 2 8 = 8 2 5 ${E} reverse: 1 9 3 4 = 4 3 9 1 ${E} reverse: 7 0 6 = 6 0 7 ${E} reverse: 2 8 1 5 = 5 1 8 2 ${E} reverse: `;

/** Distillation needs inputs only: every distinct training input of the four example tasks. */
function inputs(dir: string): string {
  const seen = new Set<string>();
  for (const task of ["copy", "reverse", "sort", "increment"]) {
    for (const line of readFileSync(join(ROOT, `examples/data/${task}.train.jsonl`), "utf8").split("\n").filter(Boolean)) seen.add((JSON.parse(line) as { prompt: string }).prompt);
  }
  const path = join(dir, "inputs.jsonl");
  writeFileSync(path, [...seen].map((text) => JSON.stringify({ text })).join("\n") + "\n");
  return path;
}

describe("distill on the tiny example model", () => {
  it("compresses a 41-token prompt into 8 prefix tokens with ≥ 90% greedy agreement on held-out inputs", { timeout: 900_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-distill-proof-"));
    try {
      const report = await distill({
        model: join(ROOT, "examples/models/tiny-tasks"),
        teacherText: TEACHER,
        data: inputs(dir),
        valid: join(ROOT, "examples/data/reverse.valid.jsonl"),
        into: "prefix",
        numVirtualTokens: 8,
        samples: 3,
        maxNewTokens: 8,
        steps: 10_000,
        batchSize: 128,
        lr: 0.1,
        output: join(dir, "out"),
      });
      const [student] = report.students;
      expect(report.teacher.promptTokens).toBeGreaterThanOrEqual(40);
      expect(report.heldOut).toBe(100);
      expect(student.greedy).toBeGreaterThanOrEqual(0.9);
      expect(student.top1).toBeGreaterThan(report.noPrompt.top1);
      expect(student.tokensPerRequest).toBeLessThan(report.teacher.tokensPerRequest / 3);
      expect(student.prefillMsPerRequest).toBeLessThan(report.teacher.prefillMsPerRequest);
      console.log(JSON.stringify({ teacher: report.teacher, student, noPrompt: report.noPrompt }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
