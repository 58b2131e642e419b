import { z } from "zod";

/**
 * The parts of `tokenizer_config.json` (transformers' file) that softprompt reads.
 * Every other key is kept as is and handed to @huggingface/tokenizers, which reads a few more
 * (`remove_space`, `do_lowercase_and_remove_accent`, ...).
 */

/** A special token is written either as its text or as a serialized AddedToken `{content, ...}`. */
const tokenSpec = z.union([z.string(), z.looseObject({ content: z.string() })], {
  error: 'expected a token string or {"content": string}',
});

const namedTemplate = z.looseObject({ name: z.string(), template: z.string() });

export const tokenizerConfigSchema = z.looseObject({
  bos_token: tokenSpec.nullish(),
  eos_token: tokenSpec.nullish(),
  pad_token: tokenSpec.nullish(),
  unk_token: tokenSpec.nullish(),
  add_bos_token: z.boolean({ error: "expected true or false" }).nullish(),
  add_eos_token: z.boolean({ error: "expected true or false" }).nullish(),
  clean_up_tokenization_spaces: z.boolean({ error: "expected true or false" }).nullish(),
  additional_special_tokens: z.array(tokenSpec, { error: "expected a list of tokens" }).nullish(),
  chat_template: z
    .union([z.string(), z.array(namedTemplate)], {
      error: 'expected a template string or a list of {"name", "template"}',
    })
    .nullish(),
});
export type TokenizerConfig = z.infer<typeof tokenizerConfigSchema>;

/** `generation_config.json` and `config.json` both carry the ids; eos may be one id or a list. */
const tokenId = z.number({ error: "expected a token id (an integer)" }).int().nonnegative();
export const idConfigSchema = z.looseObject({
  bos_token_id: tokenId.nullish(),
  eos_token_id: z.union([tokenId, z.array(tokenId)], { error: "expected a token id or a list of ids" }).nullish(),
  pad_token_id: tokenId.nullish(),
});
export type IdConfig = z.infer<typeof idConfigSchema>;

export function tokenText(spec: z.infer<typeof tokenSpec> | null | undefined): string | undefined {
  if (spec === null || spec === undefined) return undefined;
  return typeof spec === "string" ? spec : spec.content;
}

