/**
 * Hugging Face config.json -> one normalised ModelConfig.
 *
 * Each architecture family (registry.ts) reads its own fields, in both config formats in the wild:
 * transformers 4.x (top-level `rope_theta`, `rope_scaling`, `torch_dtype`) and 5.x (`rope_parameters`,
 * `dtype`). Defaults follow the transformers config classes for fields a checkpoint may leave out; the
 * fields that fix tensor shapes are required. What every family has is normalised into the shared
 * fields below; what only one family reads stays in its `family` fields.
 */
import { promises as fsp } from "node:fs";
import { join } from "node:path";
import { fail } from "../util/errors.js";
import type { Activation } from "../graph/nn.js";
import type { RopeConfig } from "./rope.js";
import { architectureFor } from "./families.js";

export type { Activation } from "../graph/nn.js";
export type { RopeConfig } from "./rope.js";

export interface ModelConfig<Fields extends object = object> {
  /** config.json's model_type; the architecture registered for it builds the model. */
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  /** Fewer than numHeads means grouped-query attention. */
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  maxPositions: number;
  normEps: number;
  activation: Activation;
  tieWordEmbeddings: boolean;
  /** Rotary position settings, or null for a family that learns absolute positions (gpt2). */
  rope: RopeConfig | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  /** The dtype the checkpoint was saved in, as transformers names it ("float32", "bfloat16", ...). */
  dtype: string;
  /** What only this model's family reads (e.g. gpt2's attention scaling, the llama family's biases). */
  family: Fields;
  raw: Record<string, unknown>;
}

/** Read and normalise `<dir>/config.json`. */
export async function readModelConfig(dir: string): Promise<ModelConfig> {
  const file = join(dir, "config.json");
  let text: string;
  try {
    text = await fsp.readFile(file, "utf8");
  } catch (err) {
    fail("file", `cannot read the model config (${(err as NodeJS.ErrnoException).code ?? err})`, { file }, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    fail("config", `not valid JSON (${(err as Error).message})`, { file });
  }
  return parseModelConfig(json, file);
}

/** Normalise a parsed config.json through its model_type's architecture; `file` only names it in errors. */
export function parseModelConfig(json: unknown, file: string): ModelConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    fail("config", "expected a JSON object", { file });
  }
  const raw = json as Record<string, unknown>;
  const modelType = raw.model_type;
  if (modelType === undefined) fail("config", "missing required field", { file, field: "model_type" });
  return architectureFor(modelType, file).parseConfig(raw, modelType as string, file);
}
