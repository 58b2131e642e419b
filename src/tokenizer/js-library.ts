import { Tokenizer as UntypedJsTokenizer } from "@huggingface/tokenizers";

/**
 * The slice of @huggingface/tokenizers 0.2.0 that softprompt calls, typed here because the package's
 * own .d.ts files use extensionless relative imports, which NodeNext resolution cannot follow,
 * so its types silently collapse to `any`.
 */
export interface JsTokenizer {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: number[]; tokens: string[] };
  decode(ids: number[], options: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
  /** The model's id for pieces it cannot encode (WordPiece, Unigram, BPE without byte fallback); undefined where none. */
  readonly model: { unk_token_id?: number };
}

/** Throws whatever the library throws for a file it cannot handle; the caller wraps it. */
export function newJsTokenizer(tokenizerJson: object, config: object): JsTokenizer {
  return new UntypedJsTokenizer(tokenizerJson, config) as JsTokenizer;
}
