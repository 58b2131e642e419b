// Training that can be trusted: a resume is refused with other data or settings (naming them), extends a
// finished run with more steps, needs a checkpoint; a folder holding a run is not trained over unless told;
// an interrupt leaves a checkpoint and a log with no step twice; the best and the last adapters are kept;
// virtual tokens that do not fit the context are refused before anything is written.
import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readModelConfig } from "../../src/models/config.js";
import { loadWeights } from "../../src/models/checkpoint.js";
import { buildModel } from "../../src/models/build.js";
import { loadTokenizer } from "../../src/tokenizer/index.js";
import { tokenizeExamples, type Example } from "../../src/data/index.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { trainAdapter, type TrainRun } from "../../src/train/trainer.js";
import { loadAdapter } from "../../src/peft/adapter.js";
import { modelDir } from "../helpers/golden.js";

async function setup(overrides: Record<string, unknown> = {}, completion = " blue") {
  const dir = modelDir("gpt2");
  const config = await readModelConfig(dir);
  const lm = buildModel(config, await loadWeights(dir, config));
  const tokenizer = await loadTokenizer(dir);
  const examples: Example[] = Array.from({ length: 16 }, (_, i) => ({ kind: "prompt", prompt: `item ${i} is`, completion }));
  const { items } = tokenizeExamples(examples, tokenizer, { maxLength: 32 });
  const trainConfig = parseTrainConfig({ numVirtualTokens: 4, lr: 0.1, steps: 6, batchSize: 4, evalEvery: 2, saveEvery: 2, seed: 5, ...overrides });
  const outputDir = mkdtempSync(join(tmpdir(), "softprompt-run-"));
  const run: TrainRun = { lm, tokenizer, baseModelName: "model", train: items.slice(0, 12), valid: items.slice(12), config: trainConfig, outputDir };
  return run;
}

const logSteps = (dir: string) => readFileSync(join(dir, "train_log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).step as number);

describe("resuming", () => {
  it("names each changed setting by its flag, and refuses other data", async () => {
    const run = await setup();
    await trainAdapter(run);
    const other = await setup({ lr: 0.05, numVirtualTokens: 4, batchSize: 2 });
    await expect(trainAdapter({ ...other, outputDir: run.outputDir, resume: true })).rejects.toThrow(/--lr was 0.1, now 0.05; --batch-size was 4, now 2/);
    const otherData = await setup({}, " red");
    await expect(trainAdapter({ ...otherData, outputDir: run.outputDir, resume: true, fingerprints: { "--data": "x" } })).rejects.toThrow(/other data: tokenized data changed/);
    rmSync(run.outputDir, { recursive: true });
  });

  it("extends a finished run with more steps, and needs a checkpoint", async () => {
    const run = await setup();
    await trainAdapter(run);
    const longer = await setup({ steps: 8 });
    const result = await trainAdapter({ ...longer, outputDir: run.outputDir, resume: true });
    expect(result.steps).toBe(8);
    expect(logSteps(run.outputDir)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const empty = await setup();
    await expect(trainAdapter({ ...empty, resume: true })).rejects.toThrow(/nothing to resume: there is no checkpoint/);
    rmSync(run.outputDir, { recursive: true });
    rmSync(empty.outputDir, { recursive: true });
  });
});

describe("the output folder", () => {
  it("is not trained over unless --overwrite, which starts clean", async () => {
    const run = await setup();
    await trainAdapter(run);
    await expect(trainAdapter(run)).rejects.toThrow(/already holds a training run \(checkpoint, last, train_log.jsonl, adapter_config.json, adapter_model.safetensors\); pass --resume to continue it or --overwrite/);
    const again = await trainAdapter({ ...run, overwrite: true, config: { ...run.config, steps: 2 } });
    expect(again.steps).toBe(2);
    expect(logSteps(run.outputDir)).toEqual([1, 2]);
    rmSync(run.outputDir, { recursive: true });
  });

  it("keeps the best validation step's adapter, and the last step's in last/", async () => {
    const run = await setup();
    const result = await trainAdapter(run);
    const best = await loadAdapter(run.outputDir);
    const last = await loadAdapter(join(run.outputDir, "last"));
    expect([...last.params.get("prompt")!.data]).toEqual([...result.params.get("prompt")!.data]);
    if (result.bestStep !== result.steps) expect([...best.params.get("prompt")!.data]).not.toEqual([...last.params.get("prompt")!.data]);
    expect(result.bestStep).not.toBeNull();
    rmSync(run.outputDir, { recursive: true });
  });

  it("refuses virtual tokens past the context window before writing anything", async () => {
    const run = await setup({ numVirtualTokens: 200 });
    rmSync(run.outputDir, { recursive: true });
    await expect(trainAdapter(run)).rejects.toThrow(/200 virtual tokens \+ the longest example's \d+ tokens = \d+ positions, but the model has 128 \(max_position_embeddings\): lower --num-virtual-tokens or --max-length/);
    expect(existsSync(run.outputDir)).toBe(false);
  });
});

describe("an interrupt", () => {
  it("writes a checkpoint at the current step; the resumed run ends where an uninterrupted one does, with no step logged twice", async () => {
    const whole = await setup();
    const uninterrupted = await trainAdapter(whole);
    const run = await setup();
    const controller = new AbortController();
    const first = await trainAdapter({ ...run, signal: controller.signal, onStep: (e) => e.step === 3 && controller.abort() });
    expect(first.interrupted).toBe(true);
    expect(first.steps).toBe(3);
    expect(JSON.parse(readFileSync(join(run.outputDir, "checkpoint", "state.json"), "utf8")).step).toBe(3);
    const resumed = await trainAdapter({ ...run, resume: true });
    expect(resumed.steps).toBe(6);
    expect(logSteps(run.outputDir)).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...resumed.params.get("prompt")!.data]).toEqual([...uninterrupted.params.get("prompt")!.data]);
    rmSync(whole.outputDir, { recursive: true });
    rmSync(run.outputDir, { recursive: true });
  });

  it("cuts the log back to the checkpoint's step on resume", async () => {
    const run = await setup({ saveEvery: 4 });
    // A crash after step 5: the checkpoint holds step 4, the log has 5 lines.
    await trainAdapter({ ...run, onStep: (e) => { if (e.step === 6) throw new Error("crash"); } }).catch(() => undefined);
    expect(logSteps(run.outputDir)).toEqual([1, 2, 3, 4, 5]);
    await trainAdapter({ ...run, resume: true });
    expect(logSteps(run.outputDir)).toEqual([1, 2, 3, 4, 5, 6]);
    rmSync(run.outputDir, { recursive: true });
  });
});
