/**
 * Pieces every family's config schema is built from: the zod atoms, the fields all Hugging Face
 * config.json files share (in both the transformers 4.x and 5.x spellings), and turning a schema's
 * first issue into an error that names the file and the field.
 *
 * Kept apart from config.ts, which dispatches to the families: family files import this module while
 * they register, so it must not import them back.
 */
import { z } from "zod";
import { parseWith } from "../formats/json.js";
import { ACTIVATION_NAMES } from "../graph/nn.js";
import { fail } from "../util/errors.js";

export const count = z.number().int().positive();
export const eps = z.number().positive();
export const tokenId = z.number().int().nonnegative();
/** An activation named as HF configs name it (see nn.ACTIVATIONS). */
export const activationName = z.enum(ACTIVATION_NAMES);

/** Fields every causal-LM config.json may carry; 5.x says `dtype`, 4.x `torch_dtype`. */
export const commonFields = {
  vocab_size: count,
  bos_token_id: tokenId.nullish(),
  eos_token_id: z.union([tokenId, z.array(tokenId)]).nullish(),
  pad_token_id: tokenId.nullish(),
  tie_word_embeddings: z.boolean().optional(),
  dtype: z.string().nullish(),
  torch_dtype: z.string().nullish(),
};

type CommonRaw = z.infer<z.ZodObject<typeof commonFields>>;

/** The ModelConfig fields that come straight from `commonFields`: special token ids and the saved dtype. */
export function commonConfig(c: CommonRaw) {
  const eos = c.eos_token_id;
  return {
    bosTokenId: c.bos_token_id ?? null,
    eosTokenIds: eos == null ? [] : Array.isArray(eos) ? eos : [eos],
    padTokenId: c.pad_token_id ?? null,
    dtype: c.dtype ?? c.torch_dtype ?? "float32",
  };
}

/** Run a family's schema over config.json; its first issue becomes an error naming the file and the field. */
export function validateConfig<T>(schema: z.ZodType<T>, raw: Record<string, unknown>, file: string): T {
  return parseWith(schema, raw, "config", { file, describe: true });
}

/** The shape fields of the Llama-like decoders (Qwen3, Gemma 2/3, Phi-3, OLMo 2, SmolLM3), spread into their schemas. */
export const decoderFields = {
  hidden_size: count,
  num_hidden_layers: count,
  num_attention_heads: count,
  num_key_value_heads: count.nullish(),
  head_dim: count.nullish(),
  intermediate_size: count,
  max_position_embeddings: count,
};
type DecoderRaw = z.infer<z.ZodObject<typeof decoderFields>>;

/**
 * The ModelConfig shape of a Llama-like decoder: kv heads default to the heads (and must divide them),
 * head_dim to hidden / heads unless the family's config class has its own default (Qwen3's 128, Gemma's 256).
 */
export function decoderShape(c: DecoderRaw, file: string, defaultHeadDim?: number) {
  const numKvHeads = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % numKvHeads !== 0) {
    fail("config", `num_attention_heads ${c.num_attention_heads} is not a multiple of num_key_value_heads ${numKvHeads}`, {
      file,
      field: "num_key_value_heads",
    });
  }
  const headDim = c.head_dim ?? defaultHeadDim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim)) {
    fail("config", `hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`, {
      file,
      field: "num_attention_heads",
    });
  }
  return {
    hiddenSize: c.hidden_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads,
    headDim,
    intermediateSize: c.intermediate_size,
    maxPositions: c.max_position_embeddings,
  };
}

export const LAYER_TYPES = ["full_attention", "sliding_attention"] as const;
export type LayerType = (typeof LAYER_TYPES)[number];
/** config.json's `layer_types` (5.x writes them; 4.x leaves them to the config class's rule). */
export const layerTypesField = z.array(z.string()).nullish();

/**
 * Each layer's attention: `layer_types` when the config has them (one per layer, each a known type;
 * "chunked_attention" and the like are refused by name), else the family's rule for layer i.
 */
export function layerTypes(given: string[] | null | undefined, numLayers: number, rule: (i: number) => LayerType, file: string): LayerType[] {
  if (given == null) return Array.from({ length: numLayers }, (_, i) => rule(i));
  if (given.length !== numLayers) {
    fail("config", `layer_types has ${given.length} entries for ${numLayers} layers`, { file, field: "layer_types" });
  }
  given.forEach((t, i) => {
    if (!(LAYER_TYPES as readonly string[]).includes(t)) {
      fail("config", `layer type ${JSON.stringify(t)} is not supported; supported: ${LAYER_TYPES.join(", ")}`, { file, field: `layer_types[${i}]` });
    }
  });
  return given as LayerType[];
}

/** Options we do not implement are refused by name and value, never ignored (a quantized checkpoint, say). */
export function refuseQuantization(raw: Record<string, unknown>, file: string): void {
  const q = raw.quantization_config;
  if (q == null) return;
  const method = typeof q === "object" && !Array.isArray(q) ? (q as Record<string, unknown>).quant_method : undefined;
  fail("config", `quantized checkpoints (quant_method ${JSON.stringify(method ?? q)}) are not supported; load the unquantized weights`, {
    file,
    field: "quantization_config",
  });
}
