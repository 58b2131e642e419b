/**
 * The prompt-tuning loop: the model stays frozen; each step runs one compiled graph that returns
 * the loss and its gradient with respect to the prompt, and the optimiser updates the prompt.
 * Seeded and resumable bit for bit: the data order of epoch e is a pure function of (seed, e),
 * and a checkpoint holds the prompt, the optimiser state and the position in the data.
 */
import { existsSync, promises as fsp } from "node:fs";
import { join } from "node:path";
import { fail, SoftpromptError } from "../util/errors.js";
import { writeDirAtomic } from "../util/fs.js";
import { Rng } from "../util/rng.js";
import { grad } from "../graph/autodiff.js";
import type { CausalLM } from "../models/causal-lm.js";
import { type Tokenizer, paddingId } from "../tokenizer/index.js";
import { type TokenizedExample, makeBatches } from "../data/index.js";
import { Program } from "../runtime/session.js";
import { BASE_FINGERPRINT, baseFingerprint, savePromptAdapter } from "../peft/adapter.js";
import { PEFT_INIT } from "../peft/prompt-tuning/config.js";
import { initPrompt } from "../peft/prompt-tuning/init.js";
import { writeSafetensors, SafetensorsFile } from "../formats/safetensors.js";
import type { TrainConfig } from "./config.js";
import { LossEvaluator } from "./evaluate.js";
import { promptLossFeeds, promptLossGraph, type TokenBatch } from "./objective.js";
import { Adafactor, AdamW, type Optimizer } from "./optim.js";
import { learningRate } from "./schedule.js";
import { assertFinite, clipGradNorm } from "./clip.js";

export interface TrainEvent {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSecond: number;
  validLoss?: number;
}

export interface TrainRun {
  lm: CausalLM;
  tokenizer: Tokenizer;
  /** Recorded as base_model_name_or_path in the adapter. */
  baseModelName: string;
  train: TokenizedExample[];
  valid: TokenizedExample[];
  config: TrainConfig;
  /** The adapter (best validation loss, or last without validation data) is written here. */
  outputDir: string;
  /** Continue from `<outputDir>/checkpoint` when it exists. */
  resume?: boolean;
  onStep?: (event: TrainEvent) => void;
  onLog?: (line: string) => void;
}

export interface TrainResult {
  steps: number;
  finalLoss: number;
  bestValidLoss: number | null;
  bestStep: number | null;
  stoppedEarly: boolean;
  prompt: Float32Array;
}

interface CheckpointState {
  version: 1;
  step: number;
  bestValidLoss: number | null;
  bestStep: number | null;
  badEvals: number;
  optimizer: unknown;
  configKey: string;
}

const CHECKPOINT = "checkpoint";
/** One JSON object per step: the TrainEvent. */
export const LOG = "train_log.jsonl";

export async function trainPrompt(run: TrainRun): Promise<TrainResult> {
  const { lm, config } = run;
  const n = config.numVirtualTokens;
  const d = lm.config.hiddenSize;
  if (run.train.length === 0) fail("data", "the training set is empty");

  // One compiled graph gives the loss, its gradient w.r.t. the prompt, and the batch's token count.
  const graph = promptLossGraph(lm, n);
  const [gPrompt] = grad(graph.loss, [graph.prompt!]);
  const step = await Program.compile({ loss: graph.loss, grad: gPrompt, count: graph.count });
  const validator = run.valid.length > 0 ? await LossEvaluator.create(lm, n) : undefined;
  const validBatches = makeBatches(run.valid, { batchSize: config.batchSize, padTokenId: paddingId(run.tokenizer), padSide: "right" });
  const weights = lm.weights.feeds();

  const batchesPerEpoch = Math.ceil(run.train.length / config.batchSize);
  const totalSteps = config.steps ?? Math.max(1, Math.ceil((config.epochs * batchesPerEpoch) / config.gradAccum));
  const optimizer: Optimizer =
    config.optimizer === "adafactor" ? new Adafactor({ shapes: new Map([["prompt", [n, d]]]), weightDecay: config.weightDecay }) : new AdamW({ weightDecay: config.weightDecay });

  let prompt = initialPrompt(run);
  let state: CheckpointState = { version: 1, step: 0, bestValidLoss: null, bestStep: null, badEvals: 0, optimizer: null, configKey: configKey(config) };
  const checkpointDir = join(run.outputDir, CHECKPOINT);
  const logPath = join(run.outputDir, LOG);
  await fsp.mkdir(run.outputDir, { recursive: true });
  if (run.resume && existsSync(checkpointDir)) {
    ({ state, prompt } = await readCheckpoint(checkpointDir, config, n * d));
    optimizer.load(state.optimizer);
    run.onLog?.(`resuming at step ${state.step} from ${checkpointDir}`);
  }

  // The batch stream: epoch e visits the examples in an order drawn from (seed, e); resuming skips ahead.
  const stream = batchStream(run.train, config, paddingId(run.tokenizer));
  for (let i = 0; i < state.step * config.gradAccum; i++) stream.next();

  let lastLoss = Number.NaN;
  let stoppedEarly = false;
  while (state.step < totalSteps) {
    const lr = learningRate(state.step, { lr: config.lr, warmupSteps: config.warmupSteps, totalSteps, decay: config.decay });
    const started = performance.now();
    // Accumulate token-weighted gradients so k batches of one step equal one batch of all their tokens.
    const sum = new Float32Array(n * d);
    let lossSum = 0;
    let tokens = 0;
    let epoch = 0;
    for (let micro = 0; micro < config.gradAccum; micro++) {
      const next = stream.next().value!;
      epoch = next.epoch;
      const out = await step.run({ ...weights, ...promptLossFeeds(next.batch, n), prompt: { data: prompt, dims: [n, d] } });
      const count = (out.count.data as Float32Array)[0];
      const g = out.grad.data as Float32Array;
      for (let i = 0; i < sum.length; i++) sum[i] += g[i] * count;
      lossSum += (out.loss.data as Float32Array)[0] * count;
      tokens += count;
    }
    if (tokens === 0) fail("data", `step ${state.step + 1}: the batch has no labelled tokens`);
    for (let i = 0; i < sum.length; i++) sum[i] /= tokens;
    const loss = lossSum / tokens;
    const grads = new Map([["prompt", sum]]);
    try {
      assertFinite(loss, state.step + 1);
      assertFinite(grads, state.step + 1);
    } catch (err) {
      // The last checkpoint (if any) stays as it was: nothing from this step is written.
      run.onLog?.(`stopping: ${(err as SoftpromptError).message}; the last good checkpoint is kept in ${checkpointDir}`);
      throw err;
    }
    const gradNorm = config.maxGradNorm > 0 ? clipGradNorm(grads, config.maxGradNorm) : Math.hypot(...sum);
    const params = new Map([["prompt", prompt]]);
    optimizer.step(params, grads, lr);
    state.step++;
    lastLoss = loss;

    const event: TrainEvent = { step: state.step, totalSteps, epoch, loss, lr, gradNorm, tokensPerSecond: tokens / ((performance.now() - started) / 1000) };
    const isLast = state.step === totalSteps;
    if (validator && (state.step % config.evalEvery === 0 || isLast)) {
      const { loss: validLoss } = await validator.evaluate(validBatches, prompt);
      event.validLoss = validLoss;
      if (state.bestValidLoss === null || validLoss < state.bestValidLoss) {
        state.bestValidLoss = validLoss;
        state.bestStep = state.step;
        state.badEvals = 0;
        await saveAdapter(run, prompt);
      } else if (config.patience > 0 && ++state.badEvals >= config.patience) {
        stoppedEarly = true;
      }
    }
    run.onStep?.(event);
    await fsp.appendFile(logPath, JSON.stringify(event) + "\n");
    if (state.step % config.saveEvery === 0 || isLast || stoppedEarly) {
      state.optimizer = optimizer.state();
      await writeCheckpoint(checkpointDir, state, prompt);
    }
    if (stoppedEarly) break;
  }
  if (!validator) await saveAdapter(run, prompt);
  return { steps: state.step, finalLoss: lastLoss, bestValidLoss: state.bestValidLoss, bestStep: state.bestStep, stoppedEarly, prompt };
}

function* batchStream(items: TokenizedExample[], config: TrainConfig, padTokenId: number): Generator<{ batch: TokenBatch; epoch: number }> {
  for (let epoch = 0; ; epoch++) {
    const rng = new Rng(config.seed * 1_000_003 + epoch);
    for (const batch of makeBatches(items, { batchSize: config.batchSize, padTokenId, padSide: "right", shuffle: true, rng })) {
      yield { batch, epoch };
    }
  }
}

function initialPrompt(run: TrainRun): Float32Array {
  const { lm, tokenizer, config } = run;
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  const special = [...tokenizer.eosTokenIds, ...(tokenizer.bosTokenId === undefined ? [] : [tokenizer.bosTokenId])];
  return initPrompt({
    numVirtual: config.numVirtualTokens,
    init: config.init,
    seed: config.seed,
    embeddings: lm.weights.tensor(lm.embeddingName),
    textIds: config.initText === undefined ? undefined : encode(config.initText),
    labelIds: config.labels?.map(encode),
    excludeIds: special,
  });
}

async function saveAdapter(run: TrainRun, prompt: Float32Array): Promise<void> {
  const { config, lm } = run;
  const initText = config.init === "labels" ? config.labels!.join(" ") : config.init === "text" ? config.initText! : null;
  await savePromptAdapter(run.outputDir, {
    config: {
      auto_mapping: null,
      base_model_name_or_path: run.baseModelName,
      inference_mode: true,
      modules_to_save: null,
      num_attention_heads: lm.config.numHeads,
      num_layers: lm.config.numLayers,
      num_transformer_submodules: 1,
      num_virtual_tokens: config.numVirtualTokens,
      peft_type: "PROMPT_TUNING",
      prompt_tuning_init: PEFT_INIT[config.init] as "RANDOM" | "TEXT" | "SAMPLE_VOCAB",
      prompt_tuning_init_text: initText,
      revision: null,
      task_type: "CAUSAL_LM",
      token_dim: lm.config.hiddenSize,
      tokenizer_kwargs: null,
      tokenizer_name_or_path: initText === null ? null : run.baseModelName,
    },
    embeddings: prompt,
    metadata: { [BASE_FINGERPRINT]: baseFingerprint(lm.weights.tensor(lm.embeddingName).data) },
  });
}

/** The settings that must not change across a resume (the schedule and data order depend on them). */
function configKey(config: TrainConfig): string {
  const { numVirtualTokens, optimizer, lr, warmupSteps, decay, steps, epochs, batchSize, gradAccum, seed } = config;
  return JSON.stringify({ numVirtualTokens, optimizer, lr, warmupSteps, decay, steps, epochs, batchSize, gradAccum, seed });
}

async function writeCheckpoint(dir: string, state: CheckpointState, prompt: Float32Array): Promise<void> {
  await writeDirAtomic(dir, async (staging) => {
    await fsp.writeFile(join(staging, "state.json"), JSON.stringify(state) + "\n");
    await writeSafetensors(join(staging, "prompt.safetensors"), { prompt: { dtype: "F32", shape: [prompt.length], data: prompt } });
  });
}

async function readCheckpoint(dir: string, config: TrainConfig, size: number): Promise<{ state: CheckpointState; prompt: Float32Array }> {
  const statePath = join(dir, "state.json");
  let state: CheckpointState;
  try {
    state = JSON.parse(await fsp.readFile(statePath, "utf8")) as CheckpointState;
  } catch (err) {
    return fail("file", `cannot read the checkpoint state: ${(err as Error).message}`, { file: statePath }, err);
  }
  if (state.version !== 1 || typeof state.step !== "number") fail("file", "not a softprompt checkpoint state", { file: statePath });
  if (state.configKey !== configKey(config)) {
    fail("config", `the checkpoint was made with other settings (${state.configKey}); resume with the same ones or start a new output folder`, { file: statePath });
  }
  const file = await SafetensorsFile.open(join(dir, "prompt.safetensors"));
  try {
    const prompt = await file.readFloat32("prompt");
    if (prompt.length !== size) fail("file", `prompt has ${prompt.length} values, expected ${size}`, { file: file.path, tensor: "prompt" });
    return { state, prompt };
  } finally {
    await file.close();
  }
}
