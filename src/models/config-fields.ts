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
