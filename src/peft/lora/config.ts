/**
 * PEFT's LoraConfig as adapter_config.json holds it (PEFT 0.21), validated with zod, and our training
 * options. Fields PEFT writes that change nothing here are kept as they are, so a file round-trips
 * unchanged; fields whose non-default values would change the model in ways we do not compute (DoRA,
 * LoRA biases, per-module ranks, layer selection, extra trained modules, …) are refused by name, with
 * the value we accept.
 */
import { z } from "zod";

/** PEFT's `target_modules` shorthand for every linear layer but the output head. */
export const ALL_LINEAR = "all-linear";

/**
 * Fields refused unless they hold PEFT's default (the value written here), each changing what the
 * adapter computes or trains beyond plain LoRA on projections.
 */
export const UNSUPPORTED_FIELDS: Record<string, unknown> = {
  use_dora: false,
  lora_bias: false,
  use_qalora: false,
  rank_pattern: {},
  alpha_pattern: {},
  layers_to_transform: null,
  layers_pattern: null,
  modules_to_save: null,
  layer_replication: null,
  target_parameters: null,
  trainable_token_indices: null,
  alora_invocation_tokens: null,
  megatron_config: null,
  use_bdlora: null,
  arrow_config: null,
  monteclora_config: null,
};

const targets = z.union([z.array(z.string().min(1)).min(1), z.string().min(1)]);

export const loraConfigSchema = z
  .looseObject({
    peft_type: z.literal("LORA"),
    task_type: z.literal("CAUSAL_LM"),
    r: z.number().int().positive(),
    lora_alpha: z.number().positive(),
    lora_dropout: z.number().min(0).lt(1).default(0),
    /** Names or suffixes (`q_proj`, `model.layers.0.self_attn.q_proj`), or one regular expression matched against the whole module name; "all-linear": every projection. */
    target_modules: targets,
    exclude_modules: targets.nullish(),
    /** True where the base layer stores its weight [in, out] (GPT-2's Conv1D); only merging cares, and it reads the model. */
    fan_in_fan_out: z.boolean().default(false),
    bias: z.literal("none").default("none"),
    use_rslora: z.boolean().default(false),
    /** How A and B started; a trained adapter is the same LoRA whichever it was, except inits that also change the base weights. */
    init_lora_weights: z.union([z.boolean(), z.literal("gaussian")]).default(true),
    base_model_name_or_path: z.string().nullish(),
    inference_mode: z.boolean().default(true),
  })
  .superRefine((config, ctx) => {
    for (const [field, accepted] of Object.entries(UNSUPPORTED_FIELDS)) {
      const value = (config as Record<string, unknown>)[field];
      if (value === undefined || sameJson(value, accepted)) continue;
      const empty = accepted === null || (typeof accepted === "object" && Object.keys(accepted as object).length === 0);
      ctx.addIssue({
        code: "custom",
        path: [field],
        message: `${JSON.stringify(value)} is not supported here (it changes the model beyond plain LoRA); accepted: ${JSON.stringify(accepted)}${empty ? " or absent" : ""}`,
      });
    }
  });
export type LoraConfig = z.infer<typeof loraConfigSchema>;

/** Training options of LoRA (Hu et al. 2021), named after PEFT's config keys; PEFT's defaults. */
export const loraOptionsSchema = z
  .object({
    r: z.number().int().positive().default(8).describe("LoRA rank: the inner width of each update B·A"),
    loraAlpha: z.number().positive().default(8).describe("LoRA alpha: updates are scaled by alpha/r (alpha/√r with --use-rslora)"),
    loraDropout: z
      .number()
      .min(0)
      .lt(1)
      .default(0)
      .describe("dropout on each adapted module's input while training (a fresh mask every step; none at validation or inference)"),
    targetModules: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe(`a module name or name suffix to adapt, e.g. q_proj, c_attn, or "${ALL_LINEAR}" (default: PEFT's for the architecture: q_proj and v_proj, GPT-2's c_attn)`),
    excludeModules: z.array(z.string().min(1)).min(1).optional().describe("a module name or name suffix to leave alone among the targets"),
    useRslora: z.boolean().default(false).describe("rank-stabilised LoRA (Kalajdzievski 2023): scale by alpha/√r instead of alpha/r"),
    bias: z.enum(["none"]).default("none").describe('which biases train: only "none" (PEFT\'s "all" and "lora_only" also change the base biases)'),
  });
export type LoraOptions = z.infer<typeof loraOptionsSchema>;

/**
 * PEFT's default target modules per model_type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING); a
 * type PEFT has none for (phi3, olmo2, smollm3) needs them given, as in PEFT.
 */
export const DEFAULT_TARGETS: Record<string, string[]> = {
  gpt2: ["c_attn"],
  gpt_neox: ["query_key_value"],
  llama: ["q_proj", "v_proj"],
  mistral: ["q_proj", "v_proj"],
  qwen2: ["q_proj", "v_proj"],
  qwen3: ["q_proj", "v_proj"],
  gemma2: ["q_proj", "v_proj"],
  gemma3_text: ["q_proj", "v_proj"],
};

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
