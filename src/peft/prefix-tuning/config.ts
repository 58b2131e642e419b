/**
 * PEFT's PrefixTuningConfig as adapter_config.json holds it, validated with zod, and our training options.
 * Fields PEFT writes that we do not use are kept as they are, so a file round-trips unchanged; fields
 * whose values we cannot serve (encoder-decoder models, other tasks) are refused by name.
 *
 * For prefix methods PEFT records the key/value width, not the hidden size: token_dim is
 * num_key_value_heads × head_dim and num_attention_heads is num_key_value_heads (grouped-query attention).
 */
import { z } from "zod";

/** The fields PREFIX_TUNING and CARTRIDGE share: a prefix of n keys/values per layer. */
export const prefixConfigFields = {
  task_type: z.literal("CAUSAL_LM"),
  num_virtual_tokens: z.number().int().positive(),
  /** num_key_value_heads × head_dim. */
  token_dim: z.number().int().positive(),
  num_layers: z.number().int().positive(),
  /** num_key_value_heads. */
  num_attention_heads: z.number().int().positive(),
  // 2 is for encoder-decoder models, whose decoder gets the prefix too.
  num_transformer_submodules: z.literal(1).default(1),
  base_model_name_or_path: z.string().nullish(),
  inference_mode: z.boolean().default(true),
};

export const prefixTuningConfigSchema = z.looseObject({
  peft_type: z.literal("PREFIX_TUNING"),
  ...prefixConfigFields,
  /** Width of the reparameterisation MLP's hidden layer (PEFT's default: token_dim). */
  encoder_hidden_size: z.number().int().positive().nullish(),
  prefix_projection: z.boolean().default(false),
  /** "zero": the prefix (or the MLP's last layer) starts at zero; null: random. */
  init_weights: z.literal("zero").nullish(),
});
export type PrefixTuningConfig = z.infer<typeof prefixTuningConfigSchema>;

/** Training options of prefix tuning (Li & Liang 2021; PEFT's names). */
export const prefixTuningOptionsSchema = z.object({
  numVirtualTokens: z.number().int().positive().default(20).describe("prefix length: keys/values per layer before the text"),
  prefixProjection: z.boolean().default(false).describe("train the prefix through an MLP (Embedding → Linear → Tanh → Linear), folded into plain keys/values when saved"),
  encoderHiddenSize: z.number().int().positive().optional().describe("hidden width of the prefix MLP (default: the key/value width, num_key_value_heads × head_dim)"),
});
export type PrefixTuningOptions = z.infer<typeof prefixTuningOptionsSchema>;
