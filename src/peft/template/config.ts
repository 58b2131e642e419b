/**
 * A template adapter's adapter_config.json and training options. The config keeps the template text and
 * each learned code's values, so the folder alone reproduces the layout. A template whose only soft span
 * is one span before everything else (and no codes) is PEFT's prompt tuning: it is saved as
 * PROMPT_TUNING (the extra keys are ignored by PEFT's loader) and PEFT loads its vectors.
 */
import { z } from "zod";

export const TEMPLATE_PEFT_TYPE = "SOFTPROMPT_TEMPLATE";

export const templateConfigSchema = z.looseObject({
  peft_type: z.enum([TEMPLATE_PEFT_TYPE, "PROMPT_TUNING"]),
  task_type: z.literal("CAUSAL_LM"),
  /** Rows of the table: every span's and code value's vectors. */
  num_virtual_tokens: z.number().int().positive(),
  token_dim: z.number().int().positive(),
  num_attention_heads: z.number().int().positive().nullish(),
  num_layers: z.number().int().positive().nullish(),
  base_model_name_or_path: z.string().nullish(),
  inference_mode: z.boolean().default(true),
  template: z.string(),
  /** Each learned code's values, in table order. */
  code_values: z.record(z.string(), z.array(z.string())).default({}),
});
export type TemplateConfig = z.infer<typeof templateConfigSchema>;

export const templateOptionsSchema = z.object({
  template: z.string().min(1).describe("a template file: text with {input} slots, {answer}, {soft:N} spans and {code:NAME} codes (README: Templates)"),
  codeValues: z.array(z.string().regex(/^[^=]+=.+$/, { error: "expected NAME=value" })).optional().describe("a learned code's value, NAME=value (default: the values the training data holds)"),
});
export type TemplateOptions = z.infer<typeof templateOptionsSchema>;
