// The distillation proof's recipe on the tiny example model, shared by its test (test/distill/proof.test.ts,
// which says why this prompt and what was measured) and its benchmark (bench/distill.ts, tiny_proof, which
// times the prefill): the tag and four worked examples of increment (40 tokens) distilled into 8 vectors,
// KL plus the hidden-state term over the teacher's greedy continuations of 3,000 seeded inputs (none held
// out), 4,000 steps of 32 rows at rate 0.1.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type DistillReport, distill } from "../src/distill/index.js";
import { Rng } from "../src/util/rng.js";
import { EOS } from "./tasks.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const E = EOS;
export const PROOF_TEACHER = `increment: 0 8 9 = 1 9 0 ${E} 2 5 3 = 3 6 4 ${E} 9 6 6 8 = 0 7 7 9 ${E} 9 9 9 6 8 = 0 0 0 7 9 ${E} increment: `;
export const PROOF_HELD_OUT = join(ROOT, "examples/data/increment.valid.jsonl");

/** Distillation needs inputs only: `n` distinct seeded digit strings of the tasks' shape (3 to 6 digits, then "="), none held out; written to `dir`. */
export function proofInputs(dir: string, n = 3000): string {
  const heldOut = new Set(readFileSync(PROOF_HELD_OUT, "utf8").split("\n").filter(Boolean).map((line) => (JSON.parse(line) as { prompt: string }).prompt));
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

/** The recipe into `into` (8 prefix tokens or 8 prompt vectors), its inputs and output under `dir`. */
export function distillProof(dir: string, into: "prefix" | "prompt"): Promise<DistillReport> {
  return distill({
    model: join(ROOT, "examples/models/tiny-tasks"),
    teacherText: PROOF_TEACHER,
    data: proofInputs(dir),
    valid: PROOF_HELD_OUT,
    into,
    numVirtualTokens: 8,
    hiddenWeight: 4,
    maxNewTokens: 8,
    steps: 4000,
    batchSize: 32,
    lr: 0.1,
    output: join(dir, into),
  });
}
