/**
 * The CLI's commands as library calls: each takes plain options (paths, ids, numbers), loads
 * what it needs and returns a plain result. The CLI only parses arguments and prints these.
 */
import { createHash } from "node:crypto";
import { promises as fsp } from "node:fs";
import { basename, join } from "node:path";
import { fail } from "./util/errors.js";
import { type Model, loadModel } from "./models/index.js";
import { modelInfo as readModelInfo, type ModelInfo } from "./models/info.js";
import { resolveModelDir } from "./formats/hub.js";
import { type Example, datasetTasks, readExamples, splitTrainValid, tokenizeExamples } from "./data/index.js";
import { type Adapter, type BaseModel, checkAdapterFits, loadAdapter, paramsDigest } from "./peft/adapter.js";
import type { PromptTuningConfig, PromptTuningOptions } from "./peft/prompt-tuning/config.js";
import { inspectPrompt, promptSimilarity, textStartIds, withStarts, type PromptSimilarity, type VectorReport } from "./peft/inspect.js";
import { parseTrainConfig, type TrainerSettings } from "./train/config.js";
import { trainAdapter, type TrainEvent, type TrainResult } from "./train/trainer.js";
import { generate, type AdapterPrompt, type Generation } from "./infer/generate.js";
import { writeLossCurve } from "./report/loss-curve.js";
import { canonicalModules, checkLoraAdapter } from "./peft/lora/index.js";
import type { LoraConfig } from "./peft/lora/config.js";
import { mergeLora } from "./peft/lora/merge.js";
import { isLoraPrompt } from "./infer/lora.js";
import type { QuantizeMode } from "./quantize/index.js";
import { evaluateTask, type Prompting, type TaskEvalResult } from "./eval/task.js";
import { objectiveWeightsOf, trainingObjective } from "./objective/combine.js";
import { type ClassifyReport, classify, readVerbalizer } from "./eval/classify.js";
import { layoutOf, readTemplate } from "./peft/template/index.js";
import { TEMPLATE_PEFT_TYPE } from "./peft/template/config.js";
import { type TemplateAdapter, codeValueSettings, evaluateTemplate, generateWithTemplate, loadTemplateAdapter, parseCodeFlags, plainTemplate, templateTokenizer } from "./template/index.js";
import { checkData, type DataCheckReport } from "./data/check.js";
import { loadTokenizer } from "./tokenizer/index.js";
import { isReviewFile, reviewExamples, reviewTrainingRows } from "./feedback/rows.js";

export async function info(model: string): Promise<ModelInfo> {
  return readModelInfo(await resolveModelDir(model));
}

export interface LoadedAdapter {
  adapter: Adapter;
  /**
   * What inference uses of it: a soft prompt's embeddings, a prefix's keys/values (prefix tuning,
   * Cartridges), or a LoRA adapter's factors (served unmerged; `mergeLora` folds them in). Its id carries the adapter's version (a digest of its tensors), so caches never serve a stale one.
   */
  prompt: AdapterPrompt;
  numVirtual: number;
  /** What could not be checked against the model (PEFT-written adapters carry no fingerprint). */
  warnings: string[];
}

/** A PEFT adapter folder of any registered method, checked against the model, ready to generate or evaluate with; `task` picks a multi-task adapter's prompt. */
export async function loadSoftPrompt(adapterDir: string, model: Model, modelName: string, task?: string): Promise<LoadedAdapter> {
  const adapter = await loadAdapter(adapterDir);
  // Prefix methods record the key/value width and heads where others record the hidden size and heads.
  const recorded = adapter.method.recordedDims?.(model.lm);
  const base = baseModelOf(model, modelName);
  const warnings = checkAdapterFits(adapter, recorded === undefined ? base : { ...base, hiddenSize: recorded.tokenDim, numHeads: recorded.numHeads }, adapterDir);
  const form = adapter.method.inferenceForm(adapter.config, adapter.params, task);
  const id = `${basename(adapterDir)}${task === undefined ? "" : `[${task}]`}:${paramsDigest(adapter.params).slice(0, 16)}`;
  switch (form.kind) {
    case "embeddings":
      return { adapter, prompt: { id, embeddings: form.embeddings }, numVirtual: form.embeddings.length / model.config.hiddenSize, warnings };
    case "past":
      return { adapter, prompt: { id, numVirtual: form.numVirtual, layers: form.layers }, numVirtual: form.numVirtual, warnings };
    case "lora":
      checkLoraAdapter(model.lm, adapter.config as LoraConfig, adapter.params, adapterDir);
      return { adapter, prompt: { id, modules: canonicalModules(model.lm, form.modules) }, numVirtual: 0, warnings };
  }
}

/** A template adapter as a server holds it: requests render through its template (src/template), so it has no one prompt for every row. */
export interface LoadedTemplate {
  adapter: Adapter;
  template: TemplateAdapter;
  warnings: string[];
}

/** What a server serves of an adapter folder: a template adapter through its template; any other as `loadSoftPrompt` loads it. */
export async function loadServable(adapterDir: string, model: Model, modelName: string): Promise<LoadedAdapter | LoadedTemplate> {
  const template = await loadTemplateAdapter(adapterDir, model.tokenizer);
  // {soft:N}{input}{answer} is saved as prompt tuning and is served as one (the same rows).
  if (template?.adapter === undefined || template.adapter.config.peft_type !== TEMPLATE_PEFT_TYPE) return loadSoftPrompt(adapterDir, model, modelName);
  return { adapter: template.adapter, template, warnings: checkAdapterFits(template.adapter, baseModelOf(model, modelName), adapterDir) };
}

/** Where warnings go when a caller gives no `onWarning`: Node's warning channel (stderr). */
const warn = (onWarning?: (message: string) => void) => onWarning ?? ((message: string) => process.emitWarning(message));

export function baseModelOf(model: Model, name: string): BaseModel {
  const { hiddenSize, numLayers, numHeads } = model.config;
  return { name, hiddenSize, numLayers, numHeads, embeddings: model.lm.weights.tensor(model.lm.embeddingName).data };
}

/** Trainer settings, the method's own options (prompt tuning's typed here; any registered method's accepted), and where things are. */
export type TrainOptions = Partial<TrainerSettings> & Partial<PromptTuningOptions> & Record<string, unknown> & {
  /** A registered method (default "prompt"). */
  method?: string;
  model: string;
  data: string;
  /** Validation data; without it, `validFraction` of the data is held out. */
  valid?: string;
  output: string;
  resume?: boolean;
  /** A review file (softprompt annotate): its good answers and corrections are trained on besides --data. */
  feedback?: string;
  /** Start over in an output folder that holds a run. */
  overwrite?: boolean;
  /** A verbalizer file (label → words): labelled rows train by cross-entropy over the words; `init: "labels"` without labels starts from them. */
  verbalizer?: string;
  /** Abort to stop after the current step with a checkpoint written (Ctrl-C). */
  signal?: AbortSignal;
  onStep?: (event: TrainEvent) => void;
  onLog?: (line: string) => void;
};

export interface TrainSummary extends TrainResult {
  output: string;
  trainExamples: number;
  validExamples: number;
  truncated: number;
  /** With a template: earlier chat turns dropped (oldest first) so rows fit. */
  droppedTurns?: number;
}

export async function train(options: TrainOptions): Promise<TrainSummary> {
  const { model: modelName, data, valid, output, resume, overwrite, signal, onStep, onLog, feedback, verbalizer, ...withWeights } = options;
  // A verbalizer is read before anything loads or is written; its words start a prompt under --init labels without --label.
  const words = verbalizer === undefined ? undefined : await readVerbalizer(verbalizer);
  const labelInit = words !== undefined && withWeights.init === "labels" && withWeights.labels === undefined;
  const [weights, settings] = objectiveWeightsOf(labelInit ? { ...withWeights, labels: [...words.values()].flat() } : withWeights);
  // --template alone means the template method; the template is read before anything loads or is written.
  const config = parseTrainConfig(settings.template !== undefined && settings.method === undefined ? { ...settings, method: "template" } : settings);
  const template = config.method === "template" ? readTemplate(config.methodOptions.template as string) : undefined;
  const model = await loadModel(modelName);
  // Methods that train per-row tasks (mpt) name the field holding each row's task; their tasks default to the data's.
  const taskField = config.methodOptions.taskField as string | undefined;
  const examples = await readExamples(data, { taskField });
  const split = valid !== undefined ? { train: examples, valid: await readExamples(valid, { taskField }) } : splitTrainValid(examples, { validFraction: config.validFraction, seed: config.seed });
  if (feedback !== undefined) split.train.push(...(await reviewTrainingRows(feedback, { unlikelihood: weights.unlikelihoodWeight > 0 }, onLog)));
  if (taskField !== undefined) config.methodOptions.tasks = datasetTasks([...split.train, ...split.valid], taskField, config.methodOptions.tasks as string[] | undefined);
  // A template's learned codes take the values the training rows carry, unless given.
  if (template !== undefined) config.methodOptions.codeValues ??= codeValueSettings(template, split.train);
  const tokenize = template === undefined
    ? (xs: typeof examples) => ({ ...tokenizeExamples(xs, model.tokenizer, { maxLength: config.maxLength }), droppedTurns: 0 })
    : templateTokenizer(layoutOf(template, config.methodOptions.codeValues as string[], model.tokenizer), model.tokenizer, config.maxLength);
  const trainSet = tokenize(split.train);
  const validSet = tokenize(split.valid);
  const truncated = trainSet.truncated + validSet.truncated;
  if (truncated > 0) onLog?.(`warning: ${truncated} examples were longer than --max-length ${config.maxLength} and lost tokens from the left of their prompt`);
  const droppedTurns = trainSet.droppedTurns + validSet.droppedTurns;
  if (droppedTurns > 0) onLog?.(`warning: ${droppedTurns} earlier chat turns (oldest first) were dropped so rows fit --max-length ${config.maxLength}`);
  const fingerprints: Record<string, string> = { "--data": await fileDigest(data) };
  if (valid !== undefined) fingerprints["--valid"] = await fileDigest(valid);
  // A resume with an edited template would lay the table out anew: the template is fingerprinted like the data.
  if (template !== undefined) fingerprints["--template"] = await fileDigest(config.methodOptions.template as string);
  if (feedback !== undefined) fingerprints["--feedback"] = await fileDigest(feedback);
  // Negatives, weights, rewards and pairs (src/objective/combine.ts); pairs are prepared before anything is written.
  const objective = await trainingObjective({
    lm: model.lm,
    tokenizer: model.tokenizer,
    weights,
    maxLength: config.maxLength,
    examples: [...split.train, ...split.valid],
    items: [...trainSet.items, ...validSet.items],
    verbalizer: words === undefined ? undefined : { file: verbalizer!, words },
  });
  const result = await trainAdapter({
    objective,
    lm: model.lm,
    tokenizer: model.tokenizer,
    baseModelName: modelName,
    train: trainSet.items,
    valid: validSet.items,
    config,
    outputDir: output,
    resume,
    overwrite,
    fingerprints,
    signal,
    onStep,
    onLog,
  });
  await writeLossCurve(output);
  return { ...result, output, trainExamples: trainSet.items.length, validExamples: validSet.items.length, truncated, ...(template === undefined ? {} : { droppedTurns }) };
}

export interface GenerateOptions {
  model: string;
  adapter?: string;
  /** One generation per input text (with a template: each fills {input}). */
  inputs: string[];
  /** A template file (an adapter trained with a template brings its own). */
  template?: string;
  /** A learned control code's value, NAME=value (repeat). */
  codes?: string[];
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  stop?: string[];
  seed?: number;
  /** For a multi-task adapter: the task whose prompt to use. */
  task?: string;
  /** Run the projections with int8 or int4 weights (inference only); default: float32. */
  quantize?: QuantizeMode;
  /** Warnings (e.g. an adapter whose base model could not be verified); default: Node's warning channel. */
  onWarning?: (message: string) => void;
}

export async function generateText(options: GenerateOptions): Promise<Generation[]> {
  if (options.inputs.length === 0) fail("usage", "give at least one input text");
  const model = await loadModel(options.model, { quantize: options.quantize });
  const templated = await templateOf(model, options, options.onWarning);
  if (templated !== undefined) {
    // Each input fills {input}; the template's other slots have no value here.
    const rows = options.inputs.map((text): Example => ({ kind: "prompt", prompt: text, completion: "", fields: { input: text } }));
    const { maxNewTokens, temperature, topK, topP, repetitionPenalty, stop, seed } = options;
    return (await generateWithTemplate(model.lm, model.tokenizer, templated, rows, { maxNewTokens, temperature, topK, topP, repetitionPenalty, stop, seed, codes: parseCodeFlags(options.codes) })).generations;
  }
  const soft = options.adapter === undefined ? undefined : await loadSoftPrompt(options.adapter, model, options.model, options.task);
  soft?.warnings.forEach(warn(options.onWarning));
  // One adapter for every row: a LoRA one runs merged into the weights, with no extra work per token.
  const merged = soft !== undefined && isLoraPrompt(soft.prompt) ? mergeLora(model.lm, soft.prompt.modules) : undefined;
  return generate(
    merged ?? model.lm,
    model.tokenizer,
    options.inputs.map((text) => ({
      text,
      prompt: merged === undefined ? soft?.prompt : undefined,
      maxNewTokens: options.maxNewTokens ?? 32,
      temperature: options.temperature,
      topK: options.topK,
      topP: options.topP,
      repetitionPenalty: options.repetitionPenalty,
      stop: options.stop,
      seed: options.seed,
    })),
  );
}

export interface EvalOptions {
  model: string;
  data: string;
  adapter?: string;
  /** A hard text prompt to compare with, placed before each input. */
  compareText?: string;
  choices?: string[];
  maxLength?: number;
  batchSize?: number;
  /** For a multi-task adapter: the task of every example, whose prompt is used. */
  task?: string;
  /** A template file: each row rendered through it (an adapter trained with a template brings its own). */
  template?: string;
  /** A learned control code's value for every row, NAME=value (repeat). */
  codes?: string[];
  /** Score with int8 or int4 projection weights (inference only); default: float32. */
  quantize?: QuantizeMode;
  /** Warnings (e.g. an adapter whose base model could not be verified); default: Node's warning channel. */
  onWarning?: (message: string) => void;
}

export interface EvalReport extends TaskEvalResult {
  /** What the top-level numbers measure: the adapter if given, else the bare model. */
  prompting: "soft" | "none";
  /** The same data with no prompt and with the hard text prompt, side by side. */
  baselines: { none?: TaskEvalResult; text?: TaskEvalResult };
  /** With a template: earlier chat turns dropped (oldest first) so rows fit. */
  droppedTurns?: number;
}

/**
 * The template a command renders rows through: its adapter's (checked against the model), or a --template
 * file alone (written text and slots); undefined for neither. A --template that differs from the adapter's is refused.
 */
async function templateOf(model: Model, options: { model: string; adapter?: string; template?: string; codes?: string[] }, onWarning?: (message: string) => void): Promise<TemplateAdapter | undefined> {
  const trained = options.adapter === undefined ? undefined : await loadTemplateAdapter(options.adapter, model.tokenizer);
  if (trained !== undefined) {
    checkAdapterFits(trained.adapter!, baseModelOf(model, options.model), options.adapter!).forEach(warn(onWarning));
    if (options.template !== undefined && readTemplate(options.template).source !== trained.template.source) {
      fail("usage", `the adapter was trained with another template (kept in ${join(options.adapter!, "adapter_config.json")}); leave out --template to use it`, { file: options.template, field: "--template" });
    }
    return trained;
  }
  if (options.template !== undefined && options.adapter !== undefined) fail("usage", `${options.adapter} was not trained with a template, so it has no soft spans to place`, { field: "--template" });
  if (options.template === undefined && (options.codes ?? []).length > 0) fail("usage", "a control code needs a template adapter (trained with {code:NAME})", { field: "--code" });
  return options.template === undefined ? undefined : plainTemplate(options.template, model.tokenizer);
}

export async function evaluate(options: EvalOptions): Promise<EvalReport> {
  const model = await loadModel(options.model, { quantize: options.quantize });
  const { task } = options;
  const examples = (await readExamples(options.data)).map((ex) => (task === undefined ? ex : { ...ex, task }));
  const run = (p: Prompting) => evaluateTask(model.lm, model.tokenizer, examples, p, options);
  const baselines: EvalReport["baselines"] = {};
  if (options.compareText !== undefined) baselines.text = await run({ kind: "text", text: options.compareText });
  const templated = await templateOf(model, options, options.onWarning);
  if (templated !== undefined) {
    const report = await evaluateTemplate(model.lm, model.tokenizer, examples, templated, { ...options, codes: parseCodeFlags(options.codes) });
    if (templated.adapter !== undefined) baselines.none = await run({ kind: "none" });
    return { ...report, prompting: templated.adapter === undefined ? "none" : "soft", baselines };
  }
  if (options.adapter === undefined) return { ...(await run({ kind: "none" })), prompting: "none", baselines };
  const { adapter, prompt, warnings } = await loadSoftPrompt(options.adapter, model, options.model, task);
  warnings.forEach(warn(options.onWarning));
  baselines.none = await run({ kind: "none" });
  return { ...(await run({ kind: "soft", adapter, prompt })), prompting: "soft", baselines };
}

export interface ClassifyDataOptions {
  model: string;
  /** Rows {"prompt" or "text", "label"}. */
  data: string;
  /** A JSON file: label → its words. */
  verbalizer: string;
  adapter?: string;
  /** For a multi-task adapter: the task whose prompt to use. */
  task?: string;
  /** Also report the accuracy after contextual calibration. */
  calibrate?: boolean;
  onWarning?: (message: string) => void;
}

/** Classify a dataset by the verbalizer's words, with an adapter's prompt or none (`softprompt classify`). */
export async function classifyData(options: ClassifyDataOptions): Promise<ClassifyReport & { prompting: "soft" | "none" }> {
  const verbalizer = await readVerbalizer(options.verbalizer);
  const examples = await readExamples(options.data);
  const model = await loadModel(options.model);
  const soft = options.adapter === undefined ? undefined : await loadSoftPrompt(options.adapter, model, options.model, options.task);
  soft?.warnings.forEach(warn(options.onWarning));
  const report = await classify(model.lm, model.tokenizer, examples, verbalizer, { verbalizerFile: options.verbalizer, prompt: soft?.prompt, calibrate: options.calibrate });
  return { ...report, prompting: soft === undefined ? "none" : "soft" };
}

export interface InspectReport {
  vectors: VectorReport[];
  similarity?: PromptSimilarity;
}

export async function inspect(options: { model: string; adapter: string; compare?: string; top?: number; onWarning?: (message: string) => void }): Promise<InspectReport> {
  const model = await loadModel(options.model);
  const { adapter, prompt, warnings } = await loadSoftPrompt(options.adapter, model, options.model);
  warnings.forEach(warn(options.onWarning));
  const embeddings = model.lm.weights.tensor(model.lm.embeddingName);
  const values = embeddingsOf(prompt, options.adapter, "adapter");
  const idToToken = (id: number) => model.tokenizer.idToToken(id);
  const nearest = inspectPrompt(values, embeddings, idToToken, options.top ?? 5);
  // A prompt started from a hard prompt: how far each vector moved from its starting token.
  const config = adapter.config as Partial<PromptTuningConfig>;
  const initText = config.prompt_tuning_init === "TEXT" ? config.prompt_tuning_init_text : undefined;
  const vectors = typeof initText === "string" ? withStarts(nearest, values, embeddings, textStartIds(model.tokenizer.encode(initText, { addSpecialTokens: false }), nearest.length), idToToken) : nearest;
  if (options.compare === undefined) return { vectors };
  const other = await loadSoftPrompt(options.compare, model, options.model);
  return { vectors, similarity: promptSimilarity(embeddingsOf(prompt, options.adapter, "adapter"), embeddingsOf(other.prompt, options.compare, "compare"), model.config.hiddenSize) };
}

/** Inspection compares vectors with token embeddings: a prefix's keys/values or a LoRA adapter's weight updates have none to compare. */
function embeddingsOf(prompt: AdapterPrompt, dir: string, flag: string): Float32Array {
  if ("embeddings" in prompt) return prompt.embeddings;
  const what = isLoraPrompt(prompt) ? "a LoRA adapter (low-rank weight updates)" : "a prefix adapter (keys/values per layer)";
  return fail("usage", `${dir} is ${what}, not virtual-token embeddings: inspect takes prompt-tuning adapters`, { field: `--${flag}` });
}

/** A dataset's counts, duplicates, leakage into --valid, token lengths (with a model) and balance (`softprompt data check`). */
export async function dataCheck(options: { file: string; valid?: string; model?: string; maxLength?: number }): Promise<DataCheckReport> {
  // A review file (softprompt annotate) is checked as the rows train --feedback makes of it.
  const examples = (await isReviewFile(options.file)) ? await reviewExamples(options.file) : await readExamples(options.file);
  const valid = options.valid === undefined ? undefined : { file: options.valid, examples: await readExamples(options.valid) };
  const tokenizer = options.model === undefined ? undefined : await loadTokenizer(await resolveModelDir(options.model));
  return checkData(options.file, examples, { valid, tokenizer, maxLength: options.maxLength });
}

/** What an adapter folder holds and how it was trained (`softprompt show`). */
export { describeAdapter as show, type AdapterSummary } from "./report/adapter-summary.js";

async function fileDigest(path: string): Promise<string> {
  return createHash("sha256").update(await fsp.readFile(path)).digest("hex");
}
