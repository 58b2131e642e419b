/**
 * Hugging Face config.json -> one normalised ModelConfig.
 *
 * Accepts both config formats in the wild: transformers 4.x (top-level `rope_theta`, `rope_scaling`,
 * `torch_dtype`) and 5.x (`rope_parameters`, `dtype`). Defaults follow the transformers config classes
 * (GPT2Config, LlamaConfig, MistralConfig, Qwen2Config) for fields a checkpoint may leave out; the fields
 * that fix tensor shapes are required.
 */
import { promises as fsp } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { fail } from "../util/errors.js";

export const MODEL_TYPES = ["gpt2", "llama", "mistral", "qwen2"] as const;
export type ModelType = (typeof MODEL_TYPES)[number];

/** gelu_new and gelu_pytorch_tanh are the same tanh approximation under two names; gelu is the exact erf form. */
export const ACTIVATIONS = ["gelu_new", "gelu", "gelu_pytorch_tanh", "relu", "silu"] as const;
export type Activation = (typeof ACTIVATIONS)[number];

export const ROPE_TYPES = ["default", "llama3"] as const;

export type RopeConfig =
  | { type: "default"; theta: number }
  | {
      /** Llama 3.1 frequency scaling: long wavelengths divided by `factor`, short kept, a smooth blend between. */
      type: "llama3";
      theta: number;
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositions: number;
    };

export interface ModelConfig {
  modelType: ModelType;
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
  /** Biases on the q/k/v projections and on the output projection (qwen2 has the first, not the second). */
  attentionBias: { qkv: boolean; output: boolean };
  mlpBias: boolean;
  /** null for gpt2, which learns absolute position embeddings instead. */
  rope: RopeConfig | null;
  /** gpt2: divide attention scores by sqrt(headDim) (llama-style models always do). */
  scaleAttnWeights: boolean;
  /** Always false: configs asking for these gpt2 variants are rejected. */
  scaleAttnByInverseLayerIdx: boolean;
  reorderAndUpcastAttn: boolean;
  /** The attention window transformers applies, or null for full attention. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  /** The dtype the checkpoint was saved in, as transformers names it ("float32", "bfloat16", ...). */
  dtype: string;
  raw: Record<string, unknown>;
}

const count = z.number().int().positive();
const eps = z.number().positive();
const tokenId = z.number().int().nonnegative();

const commonFields = {
  vocab_size: count,
  bos_token_id: tokenId.nullish(),
  eos_token_id: z.union([tokenId, z.array(tokenId)]).nullish(),
  pad_token_id: tokenId.nullish(),
  tie_word_embeddings: z.boolean().optional(),
  dtype: z.string().nullish(),
  torch_dtype: z.string().nullish(),
};

const gpt2Schema = z.looseObject({
  ...commonFields,
  n_embd: count,
  n_layer: count,
  n_head: count,
  n_inner: count.nullish(),
  n_positions: count,
  layer_norm_epsilon: eps.default(1e-5),
  activation_function: z.enum(ACTIVATIONS).default("gelu_new"),
  scale_attn_weights: z.boolean().default(true),
  scale_attn_by_inverse_layer_idx: z.boolean().default(false),
  reorder_and_upcast_attn: z.boolean().default(false),
});

/** rope_parameters (5.x) and rope_scaling (4.x) share these keys; 4.x spells rope_type as type. */
const ropeSchema = z.looseObject({
  rope_type: z.string().optional(),
  type: z.string().optional(),
  rope_theta: eps.optional(),
  factor: eps.optional(),
  low_freq_factor: eps.optional(),
  high_freq_factor: eps.optional(),
  original_max_position_embeddings: count.optional(),
});

const llamaFamilySchema = z.looseObject({
  ...commonFields,
  hidden_size: count,
  num_hidden_layers: count,
  num_attention_heads: count,
  num_key_value_heads: count.nullish(),
  head_dim: count.nullish(),
  intermediate_size: count,
  max_position_embeddings: count,
  rms_norm_eps: eps.default(1e-6),
  hidden_act: z.enum(ACTIVATIONS).default("silu"),
  attention_bias: z.boolean().default(false),
  mlp_bias: z.boolean().default(false),
  rope_theta: eps.optional(),
  rope_scaling: ropeSchema.nullish(),
  rope_parameters: ropeSchema.nullish(),
  sliding_window: count.nullish(),
  use_sliding_window: z.boolean().optional(),
  layer_types: z.array(z.string()).optional(),
});

type Gpt2Raw = z.infer<typeof gpt2Schema>;
type LlamaFamilyRaw = z.infer<typeof llamaFamilySchema>;

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

/** Normalise a parsed config.json; `file` only names it in errors. */
export function parseModelConfig(json: unknown, file: string): ModelConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    fail("config", "expected a JSON object", { file });
  }
  const raw = json as Record<string, unknown>;
  const modelType = raw.model_type;
  if (modelType === undefined) fail("config", "missing required field", { file, field: "model_type" });
  if (!(MODEL_TYPES as readonly unknown[]).includes(modelType)) {
    fail("config", `model_type ${JSON.stringify(modelType)} is not supported; supported: ${MODEL_TYPES.join(", ")}`, {
      file,
      field: "model_type",
    });
  }
  return modelType === "gpt2"
    ? normaliseGpt2(validate(gpt2Schema, raw, file), raw, file)
    : normaliseLlamaFamily(modelType as Exclude<ModelType, "gpt2">, validate(llamaFamilySchema, raw, file), raw, file);
}

/** Run a schema and turn its first issue into an error naming the file and the field. */
function validate<T>(schema: z.ZodType<T>, raw: Record<string, unknown>, file: string): T {
  const result = schema.safeParse(raw, { reportInput: true });
  if (result.success) return result.data;
  const [issue, ...others] = result.error.issues;
  const field = issue.path.join(".");
  let message: string;
  if (issue.code === "invalid_type" && issue.input === undefined) message = "missing required field";
  else if (issue.code === "invalid_value") {
    message = `${JSON.stringify(issue.input)} is not supported; supported: ${issue.values.join(", ")}`;
  } else message = `${JSON.stringify(issue.input)} is invalid: ${issue.message}`;
  if (others.length > 0) message += ` (and ${others.length} more: ${others.map((i) => i.path.join(".")).join(", ")})`;
  fail("config", message, { file, field });
}

function normaliseGpt2(c: Gpt2Raw, raw: Record<string, unknown>, file: string): ModelConfig {
  if (c.scale_attn_by_inverse_layer_idx) {
    fail("config", "scaling attention by the inverse layer index is not supported", {
      file,
      field: "scale_attn_by_inverse_layer_idx",
    });
  }
  if (c.reorder_and_upcast_attn) {
    fail("config", "reordered, upcast attention is not supported", { file, field: "reorder_and_upcast_attn" });
  }
  if (c.n_embd % c.n_head !== 0) {
    fail("config", `n_embd ${c.n_embd} is not divisible by n_head ${c.n_head}`, { file, field: "n_head" });
  }
  return {
    modelType: "gpt2",
    hiddenSize: c.n_embd,
    numLayers: c.n_layer,
    numHeads: c.n_head,
    numKvHeads: c.n_head,
    headDim: c.n_embd / c.n_head,
    intermediateSize: c.n_inner ?? 4 * c.n_embd,
    vocabSize: c.vocab_size,
    maxPositions: c.n_positions,
    normEps: c.layer_norm_epsilon,
    activation: c.activation_function,
    tieWordEmbeddings: c.tie_word_embeddings ?? true,
    attentionBias: { qkv: true, output: true },
    mlpBias: true,
    rope: null,
    scaleAttnWeights: c.scale_attn_weights,
    scaleAttnByInverseLayerIdx: false,
    reorderAndUpcastAttn: false,
    slidingWindow: null,
    ...tokenIds(c),
    dtype: c.dtype ?? c.torch_dtype ?? "float32",
    raw,
  };
}

function normaliseLlamaFamily(
  modelType: Exclude<ModelType, "gpt2">,
  c: LlamaFamilyRaw,
  raw: Record<string, unknown>,
  file: string,
): ModelConfig {
  const numKvHeads = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % numKvHeads !== 0) {
    fail("config", `num_attention_heads ${c.num_attention_heads} is not a multiple of num_key_value_heads ${numKvHeads}`, {
      file,
      field: "num_key_value_heads",
    });
  }
  if (c.head_dim == null && c.hidden_size % c.num_attention_heads !== 0) {
    fail("config", `hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`, {
      file,
      field: "num_attention_heads",
    });
  }
  return {
    modelType,
    hiddenSize: c.hidden_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads,
    headDim: c.head_dim ?? c.hidden_size / c.num_attention_heads,
    intermediateSize: c.intermediate_size,
    vocabSize: c.vocab_size,
    maxPositions: c.max_position_embeddings,
    normEps: c.rms_norm_eps,
    activation: c.hidden_act,
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
    attentionBias: attentionBias(modelType, c.attention_bias),
    // Only Llama's config has the switch; Mistral and Qwen2 MLPs have no biases.
    mlpBias: modelType === "llama" && c.mlp_bias,
    rope: parseRope(c, file),
    scaleAttnWeights: true,
    scaleAttnByInverseLayerIdx: false,
    reorderAndUpcastAttn: false,
    slidingWindow: slidingWindow(modelType, c, file),
    ...tokenIds(c),
    dtype: c.dtype ?? c.torch_dtype ?? "float32",
    raw,
  };
}

function attentionBias(modelType: Exclude<ModelType, "gpt2">, configured: boolean): ModelConfig["attentionBias"] {
  switch (modelType) {
    case "llama":
      return { qkv: configured, output: configured };
    case "mistral":
      return { qkv: false, output: false };
    case "qwen2":
      return { qkv: true, output: false };
  }
}

function parseRope(c: LlamaFamilyRaw, file: string): RopeConfig {
  // 5.x keeps everything in rope_parameters; 4.x has rope_theta at the top and scaling in rope_scaling.
  const fieldName = c.rope_parameters != null ? "rope_parameters" : "rope_scaling";
  const params = c.rope_parameters ?? c.rope_scaling ?? {};
  const theta = c.rope_parameters?.rope_theta ?? c.rope_theta ?? 10000;
  const type = params.rope_type ?? params.type ?? "default";
  if (type === "default") return { type, theta };
  if (type !== "llama3") {
    fail("config", `rope type ${JSON.stringify(type)} is not supported; supported: ${ROPE_TYPES.join(", ")}`, {
      file,
      field: `${fieldName}.rope_type`,
    });
  }
  const need = <K extends "factor" | "low_freq_factor" | "high_freq_factor" | "original_max_position_embeddings">(
    key: K,
  ): number =>
    params[key] ?? fail("config", "missing required field for llama3 rope", { file, field: `${fieldName}.${key}` });
  return {
    type,
    theta,
    factor: need("factor"),
    lowFreqFactor: need("low_freq_factor"),
    highFreqFactor: need("high_freq_factor"),
    originalMaxPositions: need("original_max_position_embeddings"),
  };
}

/**
 * Mistral applies sliding_window whenever it is set; Qwen2 only with use_sliding_window (or, in 5.x,
 * sliding layers in layer_types). A Qwen2 window shorter than the context changes the model's answers,
 * and is not implemented, so it is rejected rather than silently ignored.
 */
function slidingWindow(modelType: Exclude<ModelType, "gpt2">, c: LlamaFamilyRaw, file: string): number | null {
  const window = c.sliding_window ?? null;
  if (modelType === "mistral") return window;
  if (modelType !== "qwen2") return null;
  const used = c.use_sliding_window === true || (c.layer_types ?? []).includes("sliding_attention");
  if (!used || window === null) return null;
  if (window < c.max_position_embeddings) {
    fail(
      "config",
      `sliding-window attention (window ${window} < max_position_embeddings ${c.max_position_embeddings}) is not supported`,
      { file, field: "use_sliding_window" },
    );
  }
  return window;
}

function tokenIds(c: Pick<Gpt2Raw, "bos_token_id" | "eos_token_id" | "pad_token_id">) {
  const eos = c.eos_token_id;
  return {
    bosTokenId: c.bos_token_id ?? null,
    eosTokenIds: eos == null ? [] : Array.isArray(eos) ? eos : [eos],
    padTokenId: c.pad_token_id ?? null,
  };
}
