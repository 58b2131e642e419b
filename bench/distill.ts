// The distillation benchmark: distil a 200-token hard prompt into 8 soft vectors on the GPT-2-small shape
// (random weights): the teacher's outputs on 16 inputs of 16 tokens (greedy continuations of 8 tokens, then
// one teacher-forced pass for its top-64 distributions), KL training steps, and the prefill time per request
// with the hard prompt and with the soft one (its keys/values computed once, as inference caches them).
// Then the proof on the tiny example model, as the test suite runs it (test/distill/proof.test.ts): a
// 40-token prompt into an 8-token prefix, its agreement on 100 held-out inputs and the measured prefill,
// and the same recipe into 8 prompt vectors.
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
import { distillProof } from "../examples/distill-proof.js";

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
    tiny_proof: await tinyProof(),
    peak_rss_mb: peakRssMb(),
  };
}

/**
 * The suite's proof (test/distill/proof.test.ts), measured here with its prefill times: the tag and four
 * worked examples of increment (40 tokens) into 8 prefix tokens, KL plus the hidden-state term over the
 * teacher's greedy continuations of 3,000 seeded inputs (none held out), 4,000 steps of 32 rows; then the
 * same recipe into 8 prompt vectors, the form that falls short.
 */
async function tinyProof() {
  const dir = mkdtempSync(join(tmpdir(), "bench-distill-proof-"));
  try {
    const run = async (into: "prefix" | "prompt") => {
      const started = performance.now();
      const report = await distillProof(dir, into);
      return { report, student: report.students[0], seconds: (performance.now() - started) / 1000 };
    };
    const prefix = await run("prefix");
    const prompt = await run("prompt");
    const { report, student } = prefix;
    return {
      prompt_tokens: report.teacher.promptTokens,
      virtual_tokens: student.numVirtualTokens,
      train_inputs: report.trainInputs,
      held_out: report.heldOut,
      teacher_accuracy: report.teacher.accuracy,
      distil_s: prefix.seconds,
      train_s: student.trainSeconds,
      agreement: { greedy: student.greedy, top1: student.top1, mean_kl: student.meanKl, no_prompt_greedy: report.noPrompt.greedy, no_prompt_top1: report.noPrompt.top1 },
      tokens_per_request: { teacher: report.teacher.tokensPerRequest, student: student.tokensPerRequest },
      prefill_ms_per_request: { teacher: report.teacher.prefillMsPerRequest, student: student.prefillMsPerRequest, no_prompt: report.noPrompt.prefillMsPerRequest },
      prefill_speedup: report.teacher.prefillMsPerRequest / student.prefillMsPerRequest,
      prompt_form: { distil_s: prompt.seconds, greedy: prompt.student.greedy, top1: prompt.student.top1, mean_kl: prompt.student.meanKl, prefill_ms_per_request: prompt.student.prefillMsPerRequest },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
