/**
 * The CLI's commands as library calls: each takes plain options (paths, ids, numbers), loads
 * what it needs and returns a plain result. The CLI only parses arguments and prints these.
 */
import { createHash } from "node:crypto";
import { basename } from "node:path";
import { fail } from "./util/errors.js";
import { type Model, loadModel } from "./models/index.js";
import { modelInfo as readModelInfo, type ModelInfo } from "./models/info.js";
import { resolveModelDir } from "./formats/hub.js";
import { readExamples, splitTrainValid, tokenizeExamples } from "./data/index.js";
import { type BaseModel, checkAdapterFits, loadPromptAdapter } from "./peft/adapter.js";
import { inspectPrompt, promptSimilarity, type PromptSimilarity, type VectorReport } from "./peft/inspect.js";
import { parseTrainConfig, type TrainConfig } from "./train/config.js";
import { trainPrompt, type TrainEvent, type TrainResult } from "./train/trainer.js";
import { generate, type Generation, type SoftPrompt } from "./infer/generate.js";
import { evaluateTask, type Prompting, type TaskEvalResult } from "./infer/evaluate-task.js";

export async function info(model: string): Promise<ModelInfo> {
  return readModelInfo(await resolveModelDir(model));
}

/** A PEFT prompt-tuning adapter, checked against the model, ready to generate or evaluate with. */
export async function loadSoftPrompt(adapterDir: string, model: Model, modelName: string): Promise<{ prompt: SoftPrompt; numVirtual: number }> {
  const adapter = await loadPromptAdapter(adapterDir);
  checkAdapterFits(adapter, baseModelOf(model, modelName), adapterDir);
  const digest = createHash("sha256").update(new Uint8Array(adapter.embeddings.buffer)).digest("hex").slice(0, 16);
  return { prompt: { id: `${basename(adapterDir)}:${digest}`, embeddings: adapter.embeddings }, numVirtual: adapter.config.num_virtual_tokens };
}

export function baseModelOf(model: Model, name: string): BaseModel {
  const { hiddenSize, numLayers, numHeads } = model.config;
  return { name, hiddenSize, numLayers, numHeads, embeddings: model.lm.weights.tensor(model.lm.embeddingName).data };
}

export interface TrainOptions extends Partial<TrainConfig> {
  model: string;
  data: string;
  /** Validation data; without it, `validFraction` of the data is held out. */
  valid?: string;
  output: string;
  resume?: boolean;
  onStep?: (event: TrainEvent) => void;
  onLog?: (line: string) => void;
}

export interface TrainSummary extends TrainResult {
  output: string;
  trainExamples: number;
  validExamples: number;
  truncated: number;
}

export async function train(options: TrainOptions): Promise<TrainSummary> {
  const { model: modelName, data, valid, output, resume, onStep, onLog, ...settings } = options;
  const config = parseTrainConfig(settings);
  const model = await loadModel(modelName);
  const examples = await readExamples(data);
  const split = valid !== undefined ? { train: examples, valid: await readExamples(valid) } : splitTrainValid(examples, { validFraction: config.validFraction, seed: config.seed });
  const tokenize = (xs: typeof examples) => tokenizeExamples(xs, model.tokenizer, { maxLength: config.maxLength });
  const trainSet = tokenize(split.train);
  const validSet = tokenize(split.valid);
  const truncated = trainSet.truncated + validSet.truncated;
  if (truncated > 0) onLog?.(`warning: ${truncated} examples were longer than --max-length ${config.maxLength} and lost tokens from the left of their prompt`);
  const result = await trainPrompt({
    lm: model.lm,
    tokenizer: model.tokenizer,
    baseModelName: modelName,
    train: trainSet.items,
    valid: validSet.items,
    config,
    outputDir: output,
    resume,
    onStep,
    onLog,
  });
  return { ...result, output, trainExamples: trainSet.items.length, validExamples: validSet.items.length, truncated };
}

export interface GenerateOptions {
  model: string;
  adapter?: string;
  /** One generation per input text. */
  inputs: string[];
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  stop?: string[];
  seed?: number;
}

export async function generateText(options: GenerateOptions): Promise<Generation[]> {
  if (options.inputs.length === 0) fail("usage", "give at least one input text");
  const model = await loadModel(options.model);
  const soft = options.adapter === undefined ? undefined : await loadSoftPrompt(options.adapter, model, options.model);
  return generate(
    model.lm,
    model.tokenizer,
    options.inputs.map((text) => ({
      text,
      prompt: soft?.prompt,
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
}

export interface EvalReport extends TaskEvalResult {
  /** What the top-level numbers measure: the adapter if given, else the bare model. */
  prompting: "soft" | "none";
  /** The same data with no prompt and with the hard text prompt, side by side. */
  baselines: { none?: TaskEvalResult; text?: TaskEvalResult };
}

export async function evaluate(options: EvalOptions): Promise<EvalReport> {
  const model = await loadModel(options.model);
  const examples = await readExamples(options.data);
  const run = (p: Prompting) => evaluateTask(model.lm, model.tokenizer, examples, p, options);
  const baselines: EvalReport["baselines"] = {};
  if (options.compareText !== undefined) baselines.text = await run({ kind: "text", text: options.compareText });
  if (options.adapter === undefined) return { ...(await run({ kind: "none" })), prompting: "none", baselines };
  const soft = await loadSoftPrompt(options.adapter, model, options.model);
  baselines.none = await run({ kind: "none" });
  return { ...(await run({ kind: "soft", ...soft })), prompting: "soft", baselines };
}

export interface InspectReport {
  vectors: VectorReport[];
  similarity?: PromptSimilarity;
}

export async function inspect(options: { model: string; adapter: string; compare?: string; top?: number }): Promise<InspectReport> {
  const model = await loadModel(options.model);
  const { prompt } = await loadSoftPrompt(options.adapter, model, options.model);
  const embeddings = model.lm.weights.tensor(model.lm.embeddingName);
  const vectors = inspectPrompt(prompt.embeddings, embeddings, (id) => model.tokenizer.idToToken(id), options.top ?? 5);
  if (options.compare === undefined) return { vectors };
  const other = await loadSoftPrompt(options.compare, model, options.model);
  return { vectors, similarity: promptSimilarity(prompt.embeddings, other.prompt.embeddings, model.config.hiddenSize) };
}
