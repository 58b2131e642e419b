/**
 * PEFT's PromptTuningConfig as adapter_config.json holds it, validated with zod. Fields PEFT writes
 * that we do not use are kept as they are, so a file round-trips unchanged.
 */
import { z } from "zod";

export const PROMPT_INITS = ["random", "vocab", "text", "labels", "adapter"] as const;
export type PromptInit = (typeof PROMPT_INITS)[number];

/**
 * Our init names as PEFT spells them; label init is text init over the label words. PEFT has no init
 * from another adapter: "RANDOM" is what it would draw before loading the saved prompt over it.
 */
export const PEFT_INIT: Record<PromptInit, string> = { random: "RANDOM", vocab: "SAMPLE_VOCAB", text: "TEXT", labels: "TEXT", adapter: "RANDOM" };

export const promptTuningConfigSchema = z.looseObject({
  peft_type: z.literal("PROMPT_TUNING"),
  task_type: z.literal("CAUSAL_LM"),
  num_virtual_tokens: z.number().int().positive(),
  token_dim: z.number().int().positive(),
  num_transformer_submodules: z.number().int().positive().default(1),
  num_attention_heads: z.number().int().positive().nullish(),
  num_layers: z.number().int().positive().nullish(),
  prompt_tuning_init: z.enum(["RANDOM", "TEXT", "SAMPLE_VOCAB"]).default("RANDOM"),
  prompt_tuning_init_text: z.string().nullish(),
  tokenizer_name_or_path: z.string().nullish(),
  base_model_name_or_path: z.string().nullish(),
  inference_mode: z.boolean().default(true),
});
export type PromptTuningConfig = z.infer<typeof promptTuningConfigSchema>;

/** Training options of prompt tuning (defaults after Lester et al. 2021: 20 virtual tokens, vocabulary init). */
export const promptTuningOptionsSchema = z
  .object({
    numVirtualTokens: z.number().int().positive().default(20).describe("virtual tokens in the prompt"),
    init: z.enum(PROMPT_INITS).default("vocab").describe("prompt initialisation"),
    initText: z.string().optional().meta({ description: "hard prompt whose embeddings start the soft prompt (implies --init text)", implies: { init: "text" } }),
    labels: z.array(z.string()).optional().meta({ description: "a class label word whose embedding comes first (implies --init labels)", implies: { init: "labels" } }),
    // No `implies` here: methods without `init` (ptuning, mpt) share the flag; initFrom alone already means init "adapter".
    initFrom: z.string().optional().describe('a trained adapter folder whose prompt starts this one (prompt transfer, Vu et al. 2022); the same as --init adapter'),
  })
  .superRefine((o, ctx) => {
    if (o.init === "text" && !o.initText) ctx.addIssue({ code: "custom", message: 'init "text" needs initText', path: ["initText"] });
    if (o.init === "labels" && !(o.labels && o.labels.length > 0)) ctx.addIssue({ code: "custom", message: 'init "labels" needs labels', path: ["labels"] });
    if (o.init === "adapter" && !o.initFrom) ctx.addIssue({ code: "custom", message: 'init "adapter" needs initFrom, the adapter to start from', path: ["initFrom"] });
    if (o.initFrom !== undefined && (o.init === "text" || o.init === "labels")) ctx.addIssue({ code: "custom", message: `initFrom starts the prompt from an adapter, init "${o.init}" from words: give one of them`, path: ["init"] });
  });
export type PromptTuningOptions = z.infer<typeof promptTuningOptionsSchema>;

/** The init in effect: initFrom alone means "adapter". */
export const effectiveInit = (o: PromptTuningOptions): PromptInit => (o.initFrom !== undefined ? "adapter" : o.init);
