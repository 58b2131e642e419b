// The distillation benchmark: distil a 200-token hard prompt into 8 soft vectors on the GPT-2-small shape
// (random weights): the teacher's outputs on 16 inputs of 16 tokens (greedy continuations of 8 tokens, then
// one teacher-forced pass for its top-64 distributions), KL training steps, and the prefill time per request
// with the hard prompt and with the soft one (its keys/values computed once, as inference caches them).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildModel } from "../src/models/build.js";
import { parseTrainConfig } from "../src/train/config.js";
import { trainAdapter } from "../src/train/trainer.js";
import { loadAdapter } from "../src/peft/adapter.js";
import { DISTILL_DEFAULTS, distillExample, klObjective, prefillSecondsPerRequest, teacherTargets } from "../src/distill/index.js";
import { Rng } from "../src/util/rng.js";
import { idsTokenizer, median, peakRssMb, randomWeights, shapeConfig } from "./common.js";

const SHAPE = "gpt2-small";
const PROMPT_TOKENS = 200;
const INPUTS = 16;
const INPUT_TOKENS = 16;
const NEW_TOKENS = 8;
const VIRTUAL = 8;
const STEPS = 6;
const TOP_K = 64;

export async function benchDistill() {
  const config = shapeConfig(SHAPE);
  const lm = buildModel(config, randomWeights(config));
  const tokenizer = idsTokenizer();
  const rng = new Rng(21);
  const ids = (n: number) => Array.from({ length: n }, () => 1 + rng.int(config.vocabSize - 1));
  const prompt = ids(PROMPT_TOKENS);
  const pairs = Array.from({ length: INPUTS }, () => {
    const input = ids(INPUT_TOKENS);
    return { student: input, teacher: [...prompt, ...input] };
  });

  let started = performance.now();
  const { targets, work } = await teacherTargets(lm, tokenizer, pairs, { samples: 0, maxNewTokens: NEW_TOKENS, topK: TOP_K, seed: 0 });
  const teacherSeconds = (performance.now() - started) / 1000;

  const outputDir = mkdtempSync(join(tmpdir(), "bench-distill-"));
  const stepSeconds: number[] = [];
  started = performance.now();
  let last = started;
  await trainAdapter({
    lm,
    tokenizer,
    baseModelName: SHAPE,
    train: targets.rows.map(distillExample),
    valid: [],
    config: parseTrainConfig({ numVirtualTokens: VIRTUAL, init: "random", steps: STEPS, batchSize: 8, lr: 0.1, saveEvery: 1000 }),
    outputDir,
    objective: klObjective(targets),
    onStep: () => {
      const now = performance.now();
      stepSeconds.push((now - last) / 1000);
      last = now;
    },
  });
  const trainSeconds = (performance.now() - started) / 1000;
  const adapter = await loadAdapter(outputDir);
  const form = adapter.method.inferenceForm(adapter.config, adapter.params);
  rmSync(outputDir, { recursive: true });
  if (form.kind !== "embeddings") throw new Error("a prompt-tuning adapter has embeddings");

  const soft = { id: "bench-distilled", embeddings: form.embeddings };
  const teacherPrefill = await prefillSecondsPerRequest(lm, tokenizer, pairs.map((p) => ({ inputIds: p.teacher })), 3);
  const studentPrefill = await prefillSecondsPerRequest(lm, tokenizer, pairs.map((p) => ({ inputIds: p.student, prompt: soft })), 3);
  return {
    shape: SHAPE,
    prompt_tokens: PROMPT_TOKENS,
    virtual_tokens: VIRTUAL,
    inputs: INPUTS,
    input_tokens: INPUT_TOKENS,
    continuation_tokens: NEW_TOKENS,
    teacher_top_k: TOP_K,
    teacher_s: teacherSeconds,
    teacher_forward_passes: work.forwardPasses,
    train_steps: STEPS,
    train_s: trainSeconds,
    step_s_median: median(stepSeconds.slice(1)), // the first step includes compilation
    distil_s: teacherSeconds + trainSeconds,
    // A distillation of `softprompt distill`'s default length, from the parts measured above.
    distil_s_at_default_steps: teacherSeconds + DISTILL_DEFAULTS.steps * median(stepSeconds.slice(1)),
    default_steps: DISTILL_DEFAULTS.steps,
    tokens_per_request: { teacher: PROMPT_TOKENS + INPUT_TOKENS, student: VIRTUAL + INPUT_TOKENS },
    prefill_ms_per_request: { teacher: teacherPrefill * 1000, student: studentPrefill * 1000, saved: (teacherPrefill - studentPrefill) * 1000 },
    prefill_speedup: teacherPrefill / studentPrefill,
    peak_rss_mb: peakRssMb(),
  };
}
