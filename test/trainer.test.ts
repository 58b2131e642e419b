// The training loop on the golden tiny GPT-2: it learns, resumes bit for bit, keeps the base frozen,
// and stops on a non-finite loss without damaging its checkpoint.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { readModelConfig } from "../src/models/config.js";
import { loadWeights } from "../src/models/checkpoint.js";
import { buildModel } from "../src/models/build.js";
import { loadTokenizer } from "../src/tokenizer/index.js";
import { tokenizeExamples, type Example } from "../src/data/index.js";
import { parseTrainConfig } from "../src/train/config.js";
import { trainPrompt, type TrainRun } from "../src/train/trainer.js";
import { loadPromptAdapter } from "../src/peft/prompt-tuning/index.js";
import { SoftpromptError } from "../src/util/errors.js";
import { modelDir } from "./helpers/golden.js";

async function setup(overrides: Record<string, unknown> = {}) {
  const dir = modelDir("gpt2");
  const config = await readModelConfig(dir);
  const lm = buildModel(config, await loadWeights(dir, config));
  const tokenizer = await loadTokenizer(dir);
  // A toy task: the completion is always the same word, whatever the prompt.
  const examples: Example[] = Array.from({ length: 24 }, (_, i) => ({ kind: "prompt", prompt: `item ${i} is`, completion: " blue" }));
  const { items } = tokenizeExamples(examples, tokenizer, { maxLength: 32 });
  const trainConfig = parseTrainConfig({ numVirtualTokens: 4, lr: 0.1, steps: 12, batchSize: 4, evalEvery: 4, saveEvery: 4, seed: 5, ...overrides });
  const outputDir = mkdtempSync(join(tmpdir(), "softprompt-train-"));
  const run: TrainRun = { lm, tokenizer, baseModelName: "model", train: items.slice(0, 20), valid: items.slice(20), config: trainConfig, outputDir };
  return { run, lm, outputDir };
}

const checksum = (arrays: Float32Array[]) => {
  const h = createHash("sha256");
  for (const a of arrays) h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  return h.digest("hex");
};

describe("trainPrompt", () => {
  it("lowers the loss, writes a PEFT adapter and a log, and leaves the base weights untouched", async () => {
    const { run, lm, outputDir } = await setup();
    const before = checksum(lm.weights.names().map((n) => lm.weights.tensor(n).data));
    const losses: number[] = [];
    const result = await trainPrompt({ ...run, onStep: (e) => losses.push(e.loss) });
    expect(result.steps).toBe(12);
    expect(losses.at(-1)!).toBeLessThan(losses[0] * 0.7);
    expect(checksum(lm.weights.names().map((n) => lm.weights.tensor(n).data))).toBe(before);
    const adapter = await loadPromptAdapter(outputDir);
    expect(adapter.config.num_virtual_tokens).toBe(4);
    expect(adapter.config.token_dim).toBe(64);
    expect(readFileSync(join(outputDir, "train_log.jsonl"), "utf8").trim().split("\n")).toHaveLength(12);
    rmSync(outputDir, { recursive: true });
  });

  it("resumes from a checkpoint bit for bit", async () => {
    const full = await setup();
    const whole = await trainPrompt(full.run);

    const part = await setup({ steps: 12 });
    // Run to step 8 by stopping after the checkpoint at step 8, then resume to 12.
    let stopAt8 = false;
    await trainPrompt({
      ...part.run,
      onStep: (e) => {
        if (e.step === 9) {
          stopAt8 = true;
          throw new Error("interrupted");
        }
      },
    }).catch((err: Error) => expect(err.message).toBe("interrupted"));
    expect(stopAt8).toBe(true);
    const resumed = await trainPrompt({ ...part.run, resume: true });
    expect(resumed.steps).toBe(12);
    expect(Buffer.from(resumed.params.get("prompt")!.data.buffer).equals(Buffer.from(whole.params.get("prompt")!.data.buffer))).toBe(true);
    expect(resumed.bestValidLoss).toBe(whole.bestValidLoss);
    rmSync(full.outputDir, { recursive: true });
    rmSync(part.outputDir, { recursive: true });
  });

  it("gradient accumulation over k batches equals one batch of all their examples", async () => {
    const one = await setup({ steps: 2, batchSize: 4, gradAccum: 1, evalEvery: 100 });
    const accum = await setup({ steps: 2, batchSize: 2, gradAccum: 2, evalEvery: 100 });
    const a = await trainPrompt(one.run);
    const b = await trainPrompt(accum.run);
    const [pa, pb] = [a.params.get("prompt")!.data, b.params.get("prompt")!.data];
    for (let i = 0; i < pa.length; i++) expect(Math.abs(pa[i] - pb[i])).toBeLessThan(1e-5);
    rmSync(one.outputDir, { recursive: true });
    rmSync(accum.outputDir, { recursive: true });
  });

  it("trains with Adafactor and a cosine schedule with warmup", async () => {
    const { run, outputDir } = await setup({ optimizer: "adafactor", lr: 0.3, decay: "cosine", warmupSteps: 2, steps: 12 });
    const losses: number[] = [];
    const lrs: number[] = [];
    await trainPrompt({ ...run, onStep: (e) => (losses.push(e.loss), lrs.push(e.lr)) });
    expect(lrs[0]).toBe(0);
    expect(Math.max(...lrs)).toBeCloseTo(0.3, 6);
    expect(losses.at(-1)!).toBeLessThan(losses[0] * 0.7);
    rmSync(outputDir, { recursive: true });
  });

  it("refuses to resume with different settings", async () => {
    const { run, outputDir } = await setup({ steps: 4 });
    await trainPrompt(run);
    const other = await setup({ steps: 4, lr: 0.5 });
    await expect(trainPrompt({ ...other.run, outputDir, resume: true })).rejects.toThrow(/other settings/);
    rmSync(outputDir, { recursive: true });
  });

  it("refuses an empty training set and a corrupt checkpoint, naming them", async () => {
    const empty = await setup({ steps: 2 });
    await expect(trainPrompt({ ...empty.run, train: [] })).rejects.toThrow(/the training set is empty/);
    const { run, outputDir } = await setup({ steps: 2 });
    await trainPrompt(run);
    writeFileSync(join(outputDir, "checkpoint", "state.json"), "{not json");
    const err = await trainPrompt({ ...run, resume: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SoftpromptError);
    expect((err as SoftpromptError).code).toBe("file");
    expect((err as Error).message).toMatch(/state\.json: cannot read the checkpoint state/);
    rmSync(empty.outputDir, { recursive: true });
    rmSync(outputDir, { recursive: true });
  });

  it("stops on a non-finite loss and keeps the last good checkpoint", async () => {
    const { run, outputDir } = await setup({ steps: 8, lr: 3e38, maxGradNorm: 0, optimizer: "adamw" });
    let error: unknown;
    await trainPrompt(run).catch((err) => (error = err));
    expect(error).toBeInstanceOf(SoftpromptError);
    expect((error as SoftpromptError).code).toBe("nonfinite");
    expect((error as Error).message).toMatch(/step \d+/);
    if (existsSync(join(outputDir, "checkpoint"))) {
      const state = JSON.parse(readFileSync(join(outputDir, "checkpoint", "state.json"), "utf8"));
      expect(state.step).toBeGreaterThan(0);
    }
    rmSync(outputDir, { recursive: true });
  });
});
