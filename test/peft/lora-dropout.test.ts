// PEFT's lora_dropout while training: a fresh inverted-dropout mask on each adapted module's input every
// step (so training differs from the same run without it), drawn from (seed, step), so a resumed run is
// bit-identical to an uninterrupted one; validation and inference use no dropout.
import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readModelConfig } from "../../src/models/config.js";
import { loadWeights } from "../../src/models/checkpoint.js";
import { buildModel } from "../../src/models/build.js";
import { loadTokenizer } from "../../src/tokenizer/index.js";
import { makeBatches, tokenizeExamples, type Example } from "../../src/data/index.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { trainAdapter, type TrainRun } from "../../src/train/trainer.js";
import { LossEvaluator } from "../../src/eval/loss.js";
import { loadAdapter } from "../../src/peft/adapter.js";
import { LoraDropout } from "../../src/peft/lora/layer.js";
import * as o from "../../src/graph/ops.js";
import { modelDir } from "../helpers/golden.js";

async function setup(overrides: Record<string, unknown> = {}) {
  const dir = modelDir("llama");
  const config = await readModelConfig(dir);
  const lm = buildModel(config, await loadWeights(dir, config));
  const tokenizer = await loadTokenizer(dir);
  const examples: Example[] = Array.from({ length: 16 }, (_, i) => ({ kind: "prompt", prompt: `item ${i} is`, completion: " blue" }));
  const { items } = tokenizeExamples(examples, tokenizer, { maxLength: 32 });
  const trainConfig = parseTrainConfig({ method: "lora", r: 4, lr: 0.01, steps: 6, batchSize: 4, evalEvery: 3, saveEvery: 3, seed: 7, ...overrides });
  const outputDir = mkdtempSync(join(tmpdir(), "softprompt-lora-dropout-"));
  const run: TrainRun = { lm, tokenizer, baseModelName: "model", train: items.slice(0, 12), valid: items.slice(12), config: trainConfig, outputDir };
  return run;
}

const loraValues = (params: Map<string, { data: Float32Array }>) => [...params.values()].flatMap((p) => [...p.data]);

describe("LoRA dropout", () => {
  it("masks are {0, 1/(1−p)}, fresh each step, the same for the same step, and ones without a step", () => {
    const dropout = new LoraDropout(0.25);
    dropout.apply("m", o.input("x", "float32", ["batch", "seq", 8]));
    const batch = { inputIds: [], attentionMask: [], labels: [], batchSize: 2, seqLen: 50 };
    const at = (step: number) => dropout.feeds(batch, { seed: 1, step, micro: 0 })["lora_dropout.m"].data as Float32Array;
    const first = at(0);
    expect(first.length).toBe(2 * 50 * 8);
    expect(new Set(first)).toEqual(new Set([0, Math.fround(1 / 0.75)]));
    const dropped = first.filter((v) => v === 0).length / first.length;
    expect(dropped).toBeGreaterThan(0.15);
    expect(dropped).toBeLessThan(0.35);
    expect([...at(0)]).toEqual([...first]);
    expect([...at(1)]).not.toEqual([...first]);
    expect(new Set(dropout.feeds(batch)["lora_dropout.m"].data as Float32Array)).toEqual(new Set([1]));
  });

  it("changes training, resumes bit for bit, and the adapter's loss has no dropout", async () => {
    const plain = await setup();
    const withDropout = await setup({ loraDropout: 0.2 });
    const a = await trainAdapter(plain);
    const b = await trainAdapter(withDropout);
    expect(loraValues(b.params)).not.toEqual(loraValues(a.params));

    const part = await setup({ loraDropout: 0.2 });
    const controller = new AbortController();
    await trainAdapter({ ...part, signal: controller.signal, onStep: (e) => e.step === 3 && controller.abort() });
    const resumed = await trainAdapter({ ...part, resume: true });
    expect(loraValues(resumed.params)).toEqual(loraValues(b.params));

    // The saved (best-validation) adapter evaluates, without dropout, to the validation loss the run reported.
    const saved = await loadAdapter(withDropout.outputDir);
    expect(saved.config).toMatchObject({ lora_dropout: 0.2 });
    const evaluator = await LossEvaluator.create(withDropout.lm, saved);
    const { loss } = await evaluator.evaluate(makeBatches(withDropout.valid, { batchSize: 4, padTokenId: 511, padSide: "right" }), saved.params);
    expect(loss).toBeCloseTo(b.bestValidLoss!, 5);
    for (const run of [plain, withDropout, part]) rmSync(run.outputDir, { recursive: true });
  });
});
