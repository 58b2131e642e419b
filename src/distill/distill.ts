/**
 * `softprompt distill` as a library call: train a K-vector soft prompt (or a K-token key/value prefix,
 * `into: "prefix"`) so that the frozen model with it matches the frozen model with a long hard prompt,
 * then measure what it kept and what it saves.
 *
 *  1. Check everything a user can get wrong (sizes, context, files, the output folder, the teacher
 *     cache) before anything is computed or written.
 *  2. The teacher's outputs on the training inputs (its continuations, greedy or sampled) and on the
 *     held-out inputs (greedy), read from <output>/teacher/ or computed once and written there.
 *  3. One student per K (`sweep`), trained by the ordinary trainer with the KL objective: an ordinary
 *     PEFT adapter in <output> (or <output>/k<K> for a sweep), with distill.json beside it.
 *  4. The report: tokens and measured prefill per request, agreement with the teacher on held-out inputs,
 *     task accuracy where the data has answers, and distill.svg (agreement against K).
 */
import { createHash } from "node:crypto";
import { existsSync, promises as fsp } from "node:fs";
import { join } from "node:path";
import { fail } from "../util/errors.js";
import { writeFileAtomic } from "../util/fs.js";
import { type Model, loadModel } from "../models/index.js";
import { type Example, type TokenizedExample, readExamples, splitTrainValid, tokenizeExample } from "../data/index.js";
import { ADAPTER_WEIGHTS, baseFingerprint } from "../peft/adapter.js";
import { parseTrainConfig } from "../train/config.js";
import { CHECKPOINT, kebabFlag, trainAdapter, type TrainEvent } from "../train/trainer.js";
import { evaluateTask } from "../eval/task.js";
import { loadSoftPrompt } from "../workflows.js";
import { type KeyFlags, type TeacherKey, inputsDigest, optionName, keyDigest, readTeacherCache, writeTeacherCache } from "./cache.js";
import { type TeacherSettings, type TeacherTargets, type TeacherWork, teacherTargets } from "./teacher.js";
import { distillExample, klObjective } from "./objective.js";
import { pooledPrompt } from "./pooled.js";
import { type Agreement, agreementWith } from "./agreement.js";
import { prefillSecondsPerRequest } from "../eval/prefill.js";
import { type DistillRecord, DISTILL_RECORD, writeAgreementChart } from "./report.js";

export const INTO = ["prompt", "prefix", "both"] as const;
export type Into = (typeof INTO)[number];
/** The form of one student. */
export type Form = Exclude<Into, "both">;
export const DISTILL_INITS = ["text", "pooled", "vocab"] as const;

export interface DistillOptions {
  model: string;
  /** The long hard prompt, as text (or `teacherPrompt`, a file holding it). */
  teacherText?: string;
  teacherPrompt?: string;
  /** Inputs: {"prompt","completion"} (the completion is the task's answer, for accuracy) or {"text"} lines. */
  data: string;
  /** Held-out inputs; without them, `validFraction` of `data`. */
  valid?: string;
  /** Virtual tokens of the student (default 8); `sweep` trains one student per size instead. */
  numVirtualTokens?: number;
  sweep?: number[];
  /** "prompt": K vectors before the input embeddings; "prefix": K keys/values per layer (a Cartridge); "both": per K, a prefix and the prompt of its bytes. */
  into?: Into;
  /** "text": start from the hard prompt (its first K token embeddings; a prefix: their prefill's keys/values); "pooled": the means of its K segments' embeddings (a prompt only); "vocab": sampled vocabulary (a prefix: N(0, 1)). */
  init?: (typeof DISTILL_INITS)[number];
  /** Teacher continuations per training input: 0 one greedy, N sampled ones. */
  samples?: number;
  maxNewTokens?: number;
  teacherTopK?: number;
  /** Weight of the LM loss on the data's completions, trained beside the KL (0: none; needs {"prompt","completion"} lines). */
  lmWeight?: number;
  /** Weight of the hidden-state term beside the KL: the mean squared difference of the final hidden states at each teacher position (0: none; the teacher cache then keeps them). */
  hiddenWeight?: number;
  validFraction?: number;
  steps?: number;
  lr?: number;
  batchSize?: number;
  seed?: number;
  output: string;
  resume?: boolean;
  /** Start over: the runs and a teacher cache made with other settings are replaced. */
  overwrite?: boolean;
  signal?: AbortSignal;
  onStep?: (event: TrainEvent & { numVirtualTokens: number }) => void;
  onLog?: (line: string) => void;
}

export const DISTILL_DEFAULTS = { numVirtualTokens: 8, into: "prompt" as Into, init: "text" as const, samples: 0, maxNewTokens: 16, teacherTopK: 64, lmWeight: 0, hiddenWeight: 0, validFraction: 0.2, steps: 300, batchSize: 8, seed: 0 };

export interface StudentReport extends Agreement {
  numVirtualTokens: number;
  into: Form;
  output: string;
  /** Size of the adapter's tensors on disk. */
  adapterBytes: number;
  steps: number;
  finalLoss: number;
  trainSeconds: number;
  /** Positions a request occupies: the virtual tokens and the input. */
  tokensPerRequest: number;
  prefillMsPerRequest: number;
  /** Exact match with the data's answers (held-out); null without answers. */
  accuracy: number | null;
}

export interface DistillReport {
  teacher: {
    promptSha256: string;
    promptTokens: number;
    /** The hard prompt and the input. */
    tokensPerRequest: number;
    prefillMsPerRequest: number;
    accuracy: number | null;
    /** "full" (the vocabulary fits in --teacher-top-k) or "top-k" with the rest's mass. */
    distributions: string;
    /** Teacher continuations trained on. */
    continuations: number;
  };
  noPrompt: Agreement & { tokensPerRequest: number; prefillMsPerRequest: number; accuracy: number | null };
  students: StudentReport[];
  trainInputs: number;
  heldOut: number;
  /** Teacher work done by this call (none when the cache had it all). */
  teacherWork: TeacherWork & { cached: boolean };
  chart: string;
  interrupted: boolean;
}

type Flagged = Required<Pick<DistillOptions, "numVirtualTokens" | "into" | "init" | "samples" | "maxNewTokens" | "teacherTopK" | "lmWeight" | "hiddenWeight" | "validFraction" | "steps" | "batchSize" | "seed">> & { lr?: number };

/** Prompts learn with large rates (the demo's 0.1); a prefix takes the trainer's default unless told. */
const PROMPT_LR = 0.1;

export async function distill(options: DistillOptions): Promise<DistillReport> {
  const o: Flagged = { ...DISTILL_DEFAULTS, ...definedOnly(options) } as Flagged;
  const onLog = options.onLog ?? (() => undefined);
  const sizes = options.sweep ?? [o.numVirtualTokens];
  // 1. Everything that can be refused, before any work.
  checkSettings(o, sizes, options);
  const teacherText = await readTeacherText(options);
  const model = await loadModel(options.model);
  const plan = studentsOf(o.into, sizes, model);
  const { lm, tokenizer } = model;
  const examples = await inputsOf(options.data);
  const split = options.valid !== undefined ? { train: examples, valid: await inputsOf(options.valid) } : splitTrainValid(examples, { validFraction: o.validFraction, seed: o.seed });
  if (split.valid.length === 0) fail("usage", `no held-out inputs: --data has ${examples.length}; give --valid or a larger --valid-fraction`, { field: "validFraction" });
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: true });
  const pair = (ex: Example) => ({ student: encode(inputText(ex)), teacher: encode(teacherText + inputText(ex)) });
  const trainPairs = split.train.map(pair);
  const heldPairs = split.valid.map(pair);
  checkContext(model, [...trainPairs, ...heldPairs], plan.map((s) => s.k), o.maxNewTokens, teacherFlag(options));
  const promptTokens = encode(teacherText).length;
  const tooLong = plan.find((s) => s.k > promptTokens);
  if (o.init !== "vocab" && tooLong !== undefined) {
    const from = o.init === "pooled" ? "the means of K segments of the hard prompt" : tooLong.into === "prefix" ? "the keys/values of the hard prompt's first K tokens" : "the hard prompt's first K tokens";
    fail("usage", `a ${tooLong.into} of ${tooLong.k} starts from ${from}, but it has ${promptTokens}: use K ≤ ${promptTokens} or --init vocab`, { field: options.sweep === undefined ? "numVirtualTokens" : "sweep" });
  }
  const completions = o.lmWeight > 0 ? completionRows(split.train, model, Math.max(...plan.map((s) => s.k)), options.data) : undefined;
  const outputs = plan.map(({ into, k }) => (plan.length === 1 ? options.output : join(options.output, o.into === "both" ? `${into}-k${k}` : `k${k}`)));
  checkOutputsFree(outputs, options);

  // 2. The teacher's outputs: cached, or computed once and cached.
  const teacherDir = join(options.output, "teacher");
  const fingerprint = baseFingerprint(lm.weights.tensor(lm.embeddingName).data);
  const promptSha256 = createHash("sha256").update(teacherText).digest("hex");
  const heldSettings: TeacherSettings = { samples: 0, maxNewTokens: o.maxNewTokens, topK: o.teacherTopK, seed: o.seed }; // held out: the teacher's greedy answers
  const settings: TeacherSettings = { ...heldSettings, samples: o.samples, ...(o.hiddenWeight > 0 ? { hidden: true as const } : {}) };
  const keyOf = (texts: string[], s: TeacherSettings): TeacherKey => ({ model: fingerprint, prompt: promptSha256, inputs: inputsDigest(texts), settings: s });
  const trainKey = keyOf(split.train.map(inputText), settings);
  const heldKey = keyOf(split.valid.map(inputText), heldSettings);
  const flags: KeyFlags = { model: "--model", prompt: teacherFlag(options), inputs: "--data", settings: "--samples, --max-new-tokens, --teacher-top-k, --seed, --hidden-weight" };
  const trainCache = join(teacherDir, "train.safetensors");
  const heldCache = join(teacherDir, "heldout.safetensors");
  const cachedTrain = options.overwrite ? undefined : await readTeacherCache(trainCache, trainKey, flags);
  const cachedHeld = options.overwrite ? undefined : await readTeacherCache(heldCache, heldKey, { ...flags, inputs: options.valid === undefined ? "--data" : "--valid" });
  const work: TeacherWork = { generated: 0, forwardPasses: 0 };
  const teacherFor = async (cached: TeacherTargets | undefined, pairs: typeof trainPairs, s: TeacherSettings, key: TeacherKey, path: string) => {
    if (cached !== undefined) return cached;
    onLog(`teacher: continuing ${pairs.length} inputs after the ${promptTokens}-token prompt`);
    const { targets, work: done } = await teacherTargets(lm, tokenizer, pairs, s, o.batchSize);
    work.generated += done.generated;
    work.forwardPasses += done.forwardPasses;
    await fsp.mkdir(teacherDir, { recursive: true });
    await writeTeacherCache(path, key, targets);
    return targets;
  };
  const trainTargets = await teacherFor(cachedTrain, trainPairs, settings, trainKey, trainCache);
  const heldTargets = await teacherFor(cachedHeld, heldPairs, heldSettings, heldKey, heldCache);

  // 3. One student per size, trained on the teacher's continuations.
  const objective = klObjective(trainTargets, { teacher: keyDigest(trainKey) }, completions && { rows: completions, weight: o.lmWeight }, o.hiddenWeight);
  const answers = split.valid.filter((ex): ex is Extract<Example, { kind: "prompt" }> => ex.kind === "prompt");
  const accuracyOf = async (prompting: Parameters<typeof evaluateTask>[3]) =>
    answers.length === 0 ? null : (await evaluateTask(lm, tokenizer, answers, prompting, { batchSize: o.batchSize, maxNewTokens: o.maxNewTokens })).accuracy;
  const meanInput = mean(heldPairs.map((p) => p.student.length));
  const students: StudentReport[] = [];
  let interrupted = false;
  for (const [i, { into, k }] of plan.entries()) {
    const output = outputs[i];
    const started = performance.now();
    const result = await trainAdapter({
      lm,
      tokenizer,
      baseModelName: options.model,
      train: [...trainTargets.rows.map(distillExample), ...(completions ?? [])],
      valid: [],
      config: parseTrainConfig({ ...(await methodSettings(o, into, k, teacherText, model, options.model, join(teacherDir, `pooled-k${k}`))), steps: o.steps, lr: o.lr ?? (into === "prompt" ? PROMPT_LR : undefined), batchSize: o.batchSize, seed: o.seed, saveEvery: Math.min(100, o.steps) }),
      outputDir: output,
      resume: options.resume && existsSync(join(output, CHECKPOINT)),
      overwrite: options.overwrite,
      objective,
      fingerprints: { "--data": inputsDigest(split.train.map(inputText)), "teacher outputs": keyDigest(trainKey) },
      flagOf: (setting) => DISTILL_FLAGS[setting] ?? kebabFlag(setting),
      signal: options.signal,
      onStep: options.onStep === undefined ? undefined : (event) => options.onStep!({ ...event, numVirtualTokens: k }),
      onLog,
    });
    if (result.interrupted) {
      interrupted = true;
      break;
    }
    const trainSeconds = (performance.now() - started) / 1000;
    const loaded = await loadSoftPrompt(output, model, options.model);
    const student = { adapter: loaded.adapter, prompt: loaded.prompt };
    const agreement = await agreementWith(lm, tokenizer, heldTargets, student, o.batchSize);
    const prefill = await prefillSecondsPerRequest(lm, tokenizer, heldPairs.map((p) => ({ inputIds: p.student, prompt: loaded.prompt })));
    const record: DistillRecord = { teacherPromptSha256: promptSha256, teacherPromptTokens: promptTokens, into, numVirtualTokens: k, heldOut: heldPairs.length, ...agreement };
    await writeFileAtomic(join(output, DISTILL_RECORD), JSON.stringify(record, null, 2) + "\n");
    students.push({
      numVirtualTokens: k,
      into,
      output,
      adapterBytes: (await fsp.stat(join(output, ADAPTER_WEIGHTS))).size,
      steps: result.steps,
      finalLoss: result.finalLoss,
      trainSeconds,
      tokensPerRequest: k + meanInput,
      prefillMsPerRequest: prefill * 1000,
      accuracy: await accuracyOf({ kind: "soft", adapter: loaded.adapter, prompt: loaded.prompt }),
      ...agreement,
    });
  }

  // 4. The teacher and the bare model on the same held-out inputs, for reference.
  const noPrompt = await agreementWith(lm, tokenizer, heldTargets, undefined, o.batchSize);
  const chart = await writeAgreementChart(options.output, students, noPrompt);
  return {
    teacher: {
      promptSha256,
      promptTokens,
      tokensPerRequest: mean(heldPairs.map((p) => p.teacher.length)),
      prefillMsPerRequest: 1000 * (await prefillSecondsPerRequest(lm, tokenizer, heldPairs.map((p) => ({ inputIds: p.teacher })))),
      accuracy: await accuracyOf({ kind: "text", text: teacherText }),
      distributions: trainTargets.k >= trainTargets.vocabSize ? "full" : `top-${trainTargets.k} + rest`,
      continuations: trainTargets.rows.length,
    },
    noPrompt: {
      ...noPrompt,
      tokensPerRequest: meanInput,
      prefillMsPerRequest: 1000 * (await prefillSecondsPerRequest(lm, tokenizer, heldPairs.map((p) => ({ inputIds: p.student })))),
      accuracy: await accuracyOf({ kind: "none" }),
    },
    students,
    trainInputs: split.train.length,
    heldOut: split.valid.length,
    teacherWork: { ...work, cached: cachedTrain !== undefined && cachedHeld !== undefined },
    chart,
    interrupted,
  };
}

/** Flags of the trainer settings distill sets, for the trainer's messages (a resume with other settings). */
const DISTILL_FLAGS: Record<string, string> = { numVirtualTokens: "--num-virtual-tokens", initText: "--teacher-prompt", initFrom: "--init", objective: "--teacher-prompt", teacher: "--teacher-prompt", lmWeight: "--lm-weight", hiddenWeight: "--hidden-weight" };

/** The method and its options for a student of size k; a pooled start is written as a prompt adapter at `pooledDir` and trained from. */
async function methodSettings(o: Flagged, into: Form, k: number, teacherText: string, model: Model, modelName: string, pooledDir: string): Promise<Record<string, unknown>> {
  const fromText = o.init === "text" ? { initText: teacherText } : {};
  if (into === "prefix") return { method: "cartridge", numVirtualTokens: k, numFrozenTokens: k > 1 ? 1 : 0, ...fromText };
  if (o.init === "pooled") {
    await pooledPrompt(model, modelName, teacherText, k, pooledDir);
    return { method: "prompt", numVirtualTokens: k, initFrom: pooledDir };
  }
  return { method: "prompt", numVirtualTokens: k, init: o.init, ...fromText };
}

/**
 * The students to train, in order: one per size, or with "both" a prefix of K and the prompt of as many
 * bytes (K · layers · 2 · key/value width / hidden size vectors, rounded), so the report compares the
 * forms at equal size.
 */
function studentsOf(into: Into, sizes: number[], model: Model): { into: Form; k: number }[] {
  if (into !== "both") return sizes.map((k) => ({ into, k }));
  const { numLayers, numKvHeads, headDim, hiddenSize } = model.lm.config;
  return sizes.flatMap((k) => [
    { into: "prefix" as const, k },
    { into: "prompt" as const, k: Math.max(1, Math.round((k * numLayers * 2 * numKvHeads * headDim) / hiddenSize)) },
  ]);
}

/**
 * The LM term's rows: each training input with its completion (the data's answer), tokenized as `train`
 * does, each fitting the model's positions after `k` virtual tokens; inputs without one are refused,
 * since the term would silently cover only some of them.
 */
function completionRows(train: readonly Example[], model: Model, k: number, file: string): TokenizedExample[] {
  const missing = train.find((ex) => ex.kind !== "prompt");
  if (missing !== undefined) fail("data", 'the LM term (--lm-weight) trains on completions: every line needs {"prompt","completion"}', { file, line: missing.source?.line, field: "lmWeight" });
  return train.map((ex) => {
    const { truncated, ...row } = tokenizeExample(ex, model.tokenizer, { maxLength: model.config.maxPositions });
    const positions = k + row.inputIds.length;
    if (truncated || positions > model.config.maxPositions) {
      fail("data", `${k} virtual tokens + the input with its completion take ${positions} positions or more, past the model's ${model.config.maxPositions}: shorten it or use fewer virtual tokens`, { file, line: ex.source?.line, field: "completion" });
    }
    return row;
  });
}

function checkSettings(o: Flagged, sizes: number[], options: DistillOptions): void {
  if ((options.teacherText === undefined) === (options.teacherPrompt === undefined)) {
    fail("usage", "give the hard prompt to distil: --teacher-prompt FILE or --teacher-text TEXT (one of them)", { field: "teacherPrompt" });
  }
  const field = options.sweep === undefined ? "numVirtualTokens" : "sweep";
  const flag = options.sweep === undefined ? "--num-virtual-tokens" : "--sweep";
  for (const k of sizes) if (!Number.isInteger(k) || k < 1) fail("usage", `${flag} must be whole numbers ≥ 1, got ${k}`, { field });
  if (new Set(sizes).size !== sizes.length) fail("usage", `${flag} lists a size twice: ${sizes.join(",")}`, { field });
  if (!(INTO as readonly string[]).includes(o.into)) fail("usage", `--into must be one of ${INTO.join(", ")}, got ${o.into}`, { field: "into" });
  if (!(DISTILL_INITS as readonly string[]).includes(o.init)) fail("usage", `--init must be one of ${DISTILL_INITS.join(", ")}, got ${o.init}`, { field: "init" });
  if (!Number.isInteger(o.samples) || o.samples < 0) fail("usage", `--samples must be a whole number ≥ 0 (0: one greedy continuation), got ${o.samples}`, { field: "samples" });
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 1) fail("usage", `--max-new-tokens must be a whole number ≥ 1, got ${o.maxNewTokens}`, { field: "maxNewTokens" });
  if (!Number.isFinite(o.lmWeight) || o.lmWeight < 0) fail("usage", `--lm-weight must be a number ≥ 0 (0: the KL alone), got ${o.lmWeight}`, { field: "lmWeight" });
  if (!Number.isFinite(o.hiddenWeight) || o.hiddenWeight < 0) fail("usage", `--hidden-weight must be a number ≥ 0 (0: no hidden-state term), got ${o.hiddenWeight}`, { field: "hiddenWeight" });
  if (o.init === "pooled" && o.into !== "prompt") fail("usage", "--init pooled starts a prompt's vectors; a prefix starts from the hard prompt's prefill (--init text) or from N(0, 1) (--init vocab)", { field: "init" });
  if (!Number.isInteger(o.teacherTopK) || o.teacherTopK < 1) fail("usage", `--teacher-top-k must be a whole number ≥ 1, got ${o.teacherTopK}`, { field: "teacherTopK" });
  if (options.resume && options.overwrite) fail("usage", "--resume continues a run and --overwrite starts over: give one of them", { field: "resume" });
}

async function readTeacherText(options: DistillOptions): Promise<string> {
  let text = options.teacherText;
  if (options.teacherPrompt !== undefined) {
    try {
      text = await fsp.readFile(options.teacherPrompt, "utf8");
    } catch (err) {
      fail("usage", `cannot read the teacher prompt (${(err as NodeJS.ErrnoException).code ?? err})`, { file: options.teacherPrompt, field: "teacherPrompt" }, err);
    }
  }
  if (text === undefined || text.trim() === "") fail("usage", "the teacher prompt is empty: give the long hard prompt to distil", { field: optionName(teacherFlag(options)), file: options.teacherPrompt });
  return text;
}

const teacherFlag = (options: DistillOptions) => (options.teacherPrompt !== undefined ? "--teacher-prompt" : "--teacher-text");


/** Distillation inputs: a prompt's input (its completion is the answer) or a text; chats have no one input to continue. */
async function inputsOf(path: string): Promise<Example[]> {
  const examples = await readExamples(path);
  const chat = examples.find((ex) => ex.kind === "chat");
  if (chat !== undefined) fail("data", 'distillation continues inputs: give {"prompt","completion"} or {"text"} lines, not {"messages"}', { file: path, line: chat.source?.line });
  return examples;
}

function inputText(ex: Example): string {
  return ex.kind === "prompt" ? ex.prompt : ex.kind === "text" ? ex.text : "";
}

/** The teacher (hard prompt + input + continuation) and every student (K + input + continuation) must fit the model's positions. */
function checkContext(model: Model, pairs: { student: number[]; teacher: number[] }[], sizes: number[], maxNewTokens: number, teacherField: string): void {
  const max = model.config.maxPositions;
  const longestTeacher = Math.max(...pairs.map((p) => p.teacher.length));
  const longestInput = Math.max(...pairs.map((p) => p.student.length));
  if (longestTeacher + maxNewTokens > max) {
    fail("usage", `the teacher prompt with the longest input is ${longestTeacher} tokens, + --max-new-tokens ${maxNewTokens} = ${longestTeacher + maxNewTokens} positions, but the model has ${max}: shorten the prompt or lower --max-new-tokens`, { field: optionName(teacherField) });
  }
  const k = Math.max(...sizes);
  if (k + longestInput + maxNewTokens > max) {
    fail("usage", `${k} virtual tokens + the longest input's ${longestInput} tokens + --max-new-tokens ${maxNewTokens} = ${k + longestInput + maxNewTokens} positions, past the model's ${max}: use fewer virtual tokens`, { field: "numVirtualTokens" });
  }
}

/**
 * A folder holding a run is trained over only with --resume or --overwrite, refused before anything is
 * written; --resume needs a checkpoint to continue (a sweep's sizes not reached yet start fresh).
 */
function checkOutputsFree(dirs: string[], options: DistillOptions): void {
  if (options.resume) {
    if (!dirs.some((dir) => existsSync(join(dir, CHECKPOINT)))) fail("usage", `nothing to resume: there is no checkpoint in ${dirs.join(", ")}; run without --resume to start`, { file: dirs[0], field: "resume" });
    return;
  }
  if (options.overwrite) return;
  for (const dir of dirs) {
    if (existsSync(join(dir, CHECKPOINT)) || existsSync(join(dir, ADAPTER_WEIGHTS))) {
      fail("usage", "the output folder already holds a distillation run; pass --resume to continue it or --overwrite to start over", { file: dir, field: "output" });
    }
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
