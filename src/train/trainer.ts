/**
 * The training loop of every method: the model stays frozen; each step runs one compiled graph that
 * returns the loss and its gradient with respect to the method's tensors, and the optimiser updates
 * them. The trainer knows methods only through the registry (src/peft/method.ts).
 *
 * Seeded and resumable bit for bit: the data order of epoch e is a pure function of (seed, e), and a
 * checkpoint holds the tensors, the optimiser state, the position in the data, every setting and a
 * fingerprint of the data, so a resume with other data or settings is refused, naming what changed.
 */
import { existsSync, promises as fsp } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fail, SoftpromptError } from "../util/errors.js";
import { writeDirAtomic, writeFileAtomic } from "../util/fs.js";
import { Rng } from "../util/rng.js";
import { grad } from "../graph/autodiff.js";
import type { CausalLM } from "../models/causal-lm.js";
import { type Tokenizer, paddingId } from "../tokenizer/index.js";
import { type Batch, type TokenizedExample, makeBatches } from "../data/index.js";
import { type Feeds, Program } from "../runtime/session.js";
import { BASE_FINGERPRINT, baseFingerprint, saveAdapter } from "../peft/adapter.js";
import { type Params, methodByName } from "../peft/method.js";
import { writeSafetensors, SafetensorsFile } from "../formats/safetensors.js";
import { paramInputs } from "../eval/loss.js";
import type { TrainConfig } from "./config.js";
import { type Objective, checkFitsContext, lmObjective } from "../objective/lm.js";
import { Adafactor, AdamW, type Optimizer } from "./optim.js";
import { learningRate } from "./schedule.js";
import { assertFinite, clipGradNorm, globalNorm } from "./clip.js";

export interface TrainEvent {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** Labelled tokens of the step over its wall time (evaluation and saving not included). */
  tokensPerSecond: number;
  /** The step's wall time. */
  seconds: number;
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
  /** The adapter of the best validation step (the last without validation data) is written here; the last step's in `last/`. */
  outputDir: string;
  /** Continue from `<outputDir>/checkpoint`; without it, a folder that holds a run is refused unless `overwrite`. */
  resume?: boolean;
  /** Start over in a folder that holds a run: its checkpoint, log and adapters are removed first. */
  overwrite?: boolean;
  /** What the data came from (e.g. {"--data": sha256 of the file}), checked on resume beside the tokenized data itself. */
  fingerprints?: Record<string, string>;
  /** What to minimise (default: the LM cross-entropy on the labelled tokens); validation uses it too. */
  objective?: Objective;
  /** Flag names for settings in messages (default: `--kebab-case` of the setting). */
  flagOf?: (setting: string) => string;
  /** When aborted, the run writes a checkpoint after the current step and returns with `interrupted`. */
  signal?: AbortSignal;
  onStep?: (event: TrainEvent) => void;
  onLog?: (line: string) => void;
}

export interface TrainResult {
  steps: number;
  finalLoss: number;
  bestValidLoss: number | null;
  bestStep: number | null;
  stoppedEarly: boolean;
  /** Stopped by `signal`: the checkpoint holds the last step; resume to continue. */
  interrupted: boolean;
  /** The method's tensors after the last step. */
  params: Params;
}

interface CheckpointState {
  version: 2;
  step: number;
  bestValidLoss: number | null;
  bestStep: number | null;
  badEvals: number;
  optimizer: unknown;
  /** Every setting, the method's included. */
  settings: Record<string, unknown>;
  fingerprints: Record<string, string>;
}

export const CHECKPOINT = "checkpoint";
/** The adapter of the last step, beside the best one. */
export const LAST = "last";
/** One JSON object per step: the TrainEvent. */
export const LOG = "train_log.jsonl";
/** Settings that may change on resume: how long to train and how often to look. */
const RESUMABLE_CHANGES = new Set(["steps", "epochs", "evalEvery", "saveEvery", "patience"]);
const RUN_FILES = [CHECKPOINT, LAST, LOG, "adapter_config.json", "adapter_model.safetensors", "curve.svg"];

export async function trainAdapter(run: TrainRun): Promise<TrainResult> {
  const { lm, config } = run;
  const method = methodByName(config.method);
  if (run.train.length === 0) fail("data", "the training set is empty");
  const ctx = { lm, tokenizer: run.tokenizer, baseModelName: run.baseModelName, seed: config.seed };
  const adapterConfig = method.makeConfig(config.methodOptions, ctx);
  let params: Params = await method.initParams(config.methodOptions, ctx);

  // One compiled graph gives the loss, its gradient w.r.t. every trainable tensor, and the batch's token count.
  const inputs = paramInputs(params);
  const adaptation = method.adapt(adapterConfig, inputs, lm, true);
  const objective = run.objective ?? lmObjective;
  const graph = objective.graph(lm, adaptation);
  checkFitsContext(lm, graph.numVirtual, [...run.train, ...run.valid, ...(objective.extraRows ?? [])], run.flagOf ?? kebabFlag);
  const names = [...inputs.keys()].filter((n) => !params.get(n)!.frozen);
  const grads = grad(graph.loss, names.map((n) => inputs.get(n)!));
  const outputs = Object.fromEntries(names.map((n, i) => [`grad.${n}`, grads[i]]));
  const step = await Program.compile({ loss: graph.loss, count: graph.count, ...outputs });
  const validator = run.valid.length > 0 ? await Program.compile({ loss: graph.loss, count: graph.count }) : undefined;
  const validBatches = makeBatches(run.valid, { batchSize: config.batchSize, padTokenId: paddingId(run.tokenizer), padSide: "right" });
  const weights = lm.weights.feeds();

  const batchesPerEpoch = Math.ceil(run.train.length / config.batchSize);
  const totalSteps = config.steps ?? Math.max(1, Math.ceil((config.epochs * batchesPerEpoch) / config.gradAccum));
  const shapes = new Map(names.map((n) => [n, params.get(n)!.shape]));
  const optimizer: Optimizer = config.optimizer === "adafactor" ? new Adafactor({ shapes, weightDecay: config.weightDecay }) : new AdamW({ weightDecay: config.weightDecay });

  // Only a run with an objective of its own records one, so checkpoints of LM runs read as before.
  const objectiveSettings = run.objective === undefined ? {} : { objective: objective.name, ...objective.settings };
  const settings = { ...withoutMethodOptions(config), ...config.methodOptions, ...objectiveSettings };
  const fingerprints = { ...run.fingerprints, "tokenized data": itemsDigest(run.train, run.valid) };
  let state: CheckpointState = { version: 2, step: 0, bestValidLoss: null, bestStep: null, badEvals: 0, optimizer: null, settings, fingerprints };
  const checkpointDir = join(run.outputDir, CHECKPOINT);
  const logPath = join(run.outputDir, LOG);
  await prepareOutput(run);
  if (run.resume) {
    ({ state, params } = await readCheckpoint(checkpointDir, state, params, run.flagOf ?? kebabFlag));
    optimizer.load(state.optimizer);
    await cutLog(logPath, state.step);
    run.onLog?.(`resuming at step ${state.step} from ${checkpointDir}`);
  }

  // The batch stream: epoch e visits the examples in an order drawn from (seed, e); resuming skips ahead.
  const stream = batchStream(run.train, config, paddingId(run.tokenizer));
  for (let i = 0; i < state.step * config.gradAccum; i++) stream.next();
  const save = (dir: string) => saveAdapter(dir, { method, config: adapterConfig, params, metadata: { [BASE_FINGERPRINT]: baseFingerprint(lm.weights.tensor(lm.embeddingName).data) } });
  const checkpoint = async () => {
    state.optimizer = optimizer.state();
    await writeCheckpoint(checkpointDir, state, params);
  };

  let lastLoss = Number.NaN;
  let stoppedEarly = false;
  let interrupted = false;
  while (state.step < totalSteps) {
    if (run.signal?.aborted) {
      interrupted = true;
      await checkpoint();
      break;
    }
    const lr = learningRate(state.step, { lr: config.lr, warmupSteps: config.warmupSteps, totalSteps, decay: config.decay });
    const started = performance.now();
    // Accumulate token-weighted gradients so k batches of one step equal one batch of all their tokens.
    const sums = new Map(names.map((n) => [n, new Float32Array(params.get(n)!.data.length)]));
    let lossSum = 0;
    let tokens = 0;
    let epoch = 0;
    for (let micro = 0; micro < config.gradAccum; micro++) {
      const next = stream.next().value!;
      epoch = next.epoch;
      const rows = objective.expand?.(next.batch) ?? next.batch;
      const out = await step.run({ ...weights, ...paramFeeds(params), ...adaptation.feeds(rows, { seed: config.seed, step: state.step, micro }), ...objective.feeds(rows, graph) });
      const count = (out.count.data as Float32Array)[0];
      for (const [n, sum] of sums) {
        const g = out[`grad.${n}`].data as Float32Array;
        for (let i = 0; i < sum.length; i++) sum[i] += g[i] * count;
      }
      lossSum += (out.loss.data as Float32Array)[0] * count;
      tokens += count;
    }
    if (tokens === 0) fail("data", `step ${state.step + 1}: the batch has no labelled tokens`);
    for (const sum of sums.values()) for (let i = 0; i < sum.length; i++) sum[i] /= tokens;
    const loss = lossSum / tokens;
    try {
      assertFinite(loss, state.step + 1);
      assertFinite(sums, state.step + 1);
    } catch (err) {
      // The last checkpoint (if any) stays as it was: nothing from this step is written.
      run.onLog?.(`stopping: ${(err as SoftpromptError).message}; the last good checkpoint is kept in ${checkpointDir}`);
      throw err;
    }
    const gradNorm = config.maxGradNorm > 0 ? clipGradNorm(sums, config.maxGradNorm) : globalNorm(sums);
    optimizer.step(new Map([...params].map(([n, p]) => [n, p.data])), sums, lr);
    state.step++;
    lastLoss = loss;

    const seconds = (performance.now() - started) / 1000;
    const event: TrainEvent = { step: state.step, totalSteps, epoch, loss, lr, gradNorm, tokensPerSecond: tokens / seconds, seconds };
    const isLast = state.step === totalSteps;
    if (validator && (state.step % config.evalEvery === 0 || isLast)) {
      const validLoss = await meanLoss(validator, validBatches, { ...weights, ...paramFeeds(params) }, (batch) => {
        const rows = objective.expand?.(batch) ?? batch;
        return { ...adaptation.feeds(rows), ...objective.feeds(rows, graph) };
      });
      event.validLoss = validLoss;
      if (state.bestValidLoss === null || validLoss < state.bestValidLoss) {
        state.bestValidLoss = validLoss;
        state.bestStep = state.step;
        state.badEvals = 0;
        await save(run.outputDir);
      } else if (config.patience > 0 && ++state.badEvals >= config.patience) {
        stoppedEarly = true;
      }
    }
    run.onStep?.(event);
    await fsp.appendFile(logPath, JSON.stringify(event) + "\n");
    if (state.step % config.saveEvery === 0 || isLast || stoppedEarly) await checkpoint();
    if (stoppedEarly) break;
  }
  if (!interrupted) {
    if (!validator) await save(run.outputDir);
    await save(join(run.outputDir, LAST));
  }
  return { steps: state.step, finalLoss: lastLoss, bestValidLoss: state.bestValidLoss, bestStep: state.bestStep, stoppedEarly, interrupted, params };
}

/** The name this trainer had when it trained prompts only; the same function. */
export const trainPrompt = trainAdapter;

/** Refuse to train over an earlier run unless resuming or told to overwrite; resuming needs a checkpoint. */
async function prepareOutput(run: TrainRun): Promise<void> {
  const dir = run.outputDir;
  const checkpointDir = join(dir, CHECKPOINT);
  if (run.resume) {
    if (!existsSync(checkpointDir)) fail("usage", `nothing to resume: there is no checkpoint in ${dir}; train without --resume to start a run`, { file: checkpointDir });
    return;
  }
  const present = RUN_FILES.filter((f) => existsSync(join(dir, f)));
  if (present.length > 0) {
    if (!run.overwrite) {
      fail("usage", `the output folder already holds a training run (${present.join(", ")}); pass --resume to continue it or --overwrite to start over`, { file: dir });
    }
    for (const f of present) await fsp.rm(join(dir, f), { recursive: true, force: true });
  }
  await fsp.mkdir(dir, { recursive: true });
}

function* batchStream(items: TokenizedExample[], config: TrainConfig, padTokenId: number): Generator<{ batch: Batch; epoch: number }> {
  for (let epoch = 0; ; epoch++) {
    const rng = new Rng(config.seed * 1_000_003 + epoch);
    for (const batch of makeBatches(items, { batchSize: config.batchSize, padTokenId, padSide: "right", shuffle: true, rng })) {
      yield { batch, epoch };
    }
  }
}

/** The objective's mean over a dataset: each batch's mean weighted by its count (so batch size and padding do not matter). */
async function meanLoss(program: Program, batches: readonly Batch[], fixed: Feeds, feedsOf: (batch: Batch) => Feeds): Promise<number> {
  let total = 0;
  let units = 0;
  for (const batch of batches) {
    const out = await program.run({ ...fixed, ...feedsOf(batch) });
    const count = (out.count.data as Float32Array)[0];
    total += (out.loss.data as Float32Array)[0] * count;
    units += count;
  }
  return units > 0 ? total / units : Number.NaN;
}

function paramFeeds(params: Params): Feeds {
  const feeds: Feeds = {};
  for (const [name, p] of params) feeds[name] = { data: p.data, dims: p.shape };
  return feeds;
}

function withoutMethodOptions(config: TrainConfig): Record<string, unknown> {
  const { methodOptions: _, ...rest } = config;
  return rest;
}

/** sha256 of the tokenized training and validation data: it changes with the data and with the tokenizer. */
function itemsDigest(train: readonly TokenizedExample[], valid: readonly TokenizedExample[]): string {
  const hash = createHash("sha256");
  for (const [name, items] of [["train", train], ["valid", valid]] as const) {
    hash.update(`${name}:${items.length};`);
    for (const x of items) hash.update(Int32Array.from(x.inputIds)).update(Int32Array.from(x.labels)).update(";");
  }
  return hash.digest("hex");
}

export function kebabFlag(setting: string): string {
  return `--${setting.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

async function writeCheckpoint(dir: string, state: CheckpointState, params: Params): Promise<void> {
  await writeDirAtomic(dir, async (staging) => {
    await fsp.writeFile(join(staging, "state.json"), JSON.stringify(state) + "\n");
    const tensors = Object.fromEntries([...params].map(([name, p]) => [name, { dtype: "F32" as const, shape: p.shape, data: p.data }]));
    await writeSafetensors(join(staging, "params.safetensors"), tensors);
  });
}

/** The saved state and tensors, after checking that the run is the same one: same settings, same data. */
async function readCheckpoint(
  dir: string,
  fresh: CheckpointState,
  initial: Params,
  flagOf: (setting: string) => string,
): Promise<{ state: CheckpointState; params: Params }> {
  const statePath = join(dir, "state.json");
  let state: CheckpointState;
  try {
    state = JSON.parse(await fsp.readFile(statePath, "utf8")) as CheckpointState;
  } catch (err) {
    return fail("file", `cannot read the checkpoint state: ${(err as Error).message}`, { file: statePath }, err);
  }
  if (typeof state !== "object" || state === null || typeof state.step !== "number") fail("file", "not a softprompt checkpoint state", { file: statePath });
  if (state.version !== 2) fail("file", `checkpoint version ${String(state.version)} was written by an older softprompt; start a new output folder`, { file: statePath });
  const changed = Object.keys({ ...fresh.settings, ...state.settings })
    .filter((k) => !RESUMABLE_CHANGES.has(k) && JSON.stringify(state.settings[k]) !== JSON.stringify(fresh.settings[k]))
    .map((k) => `${flagOf(k)} was ${show(state.settings[k])}, now ${show(fresh.settings[k])}`);
  if (changed.length > 0) fail("config", `the checkpoint was made with other settings: ${changed.join("; ")}; resume with the same ones or start a new output folder`, { file: statePath });
  const otherData = Object.keys(fresh.fingerprints).filter((k) => k in state.fingerprints && state.fingerprints[k] !== fresh.fingerprints[k]);
  if (otherData.length > 0) fail("data", `the checkpoint was made with other data: ${otherData.join(", ")} changed; resume with the same data or start a new output folder`, { file: statePath });
  const file = await SafetensorsFile.open(join(dir, "params.safetensors"));
  try {
    const params: Params = new Map();
    for (const [name, p] of initial) {
      if (!file.has(name)) fail("file", "missing from the checkpoint", { file: file.path, tensor: name });
      const data = await file.readFloat32(name);
      if (data.length !== p.data.length) fail("file", `holds ${data.length} values, expected ${p.data.length}`, { file: file.path, tensor: name });
      params.set(name, { shape: p.shape, data });
    }
    return { state: { ...state, settings: fresh.settings, fingerprints: fresh.fingerprints }, params };
  } finally {
    await file.close();
  }
}

const show = (v: unknown) => (v === undefined ? "unset" : typeof v === "string" ? v : JSON.stringify(v));

/** On resume, drop log lines after the checkpoint's step, so no step appears twice. */
async function cutLog(path: string, step: number): Promise<void> {
  if (!existsSync(path)) return;
  const lines = (await fsp.readFile(path, "utf8")).split("\n").filter((l) => l.trim() !== "");
  const kept = lines.filter((l) => {
    try {
      return (JSON.parse(l) as { step?: number }).step! <= step;
    } catch {
      return false;
    }
  });
  if (kept.length !== lines.length) await writeFileAtomic(path, kept.map((l) => l + "\n").join(""));
}

