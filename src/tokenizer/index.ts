/**
 * Tokenizers for Hugging Face model folders: `tokenizer.json` run by @huggingface/tokenizers
 * (the pure-JS port of the Rust library), plus the transformers-level settings around it
 * (`tokenizer_config.json`: special tokens, add_bos/eos flags, chat template) and the id
 * fallbacks in `generation_config.json` / `config.json`.
 */
import { join } from "node:path";
import { promises as fsp } from "node:fs";
import type { Template } from "@huggingface/jinja";
import { fail } from "../util/errors.js";
import { readJsonFile, isPlainObject, parseWith } from "../formats/json.js";
import { newJsTokenizer, type JsTokenizer } from "./js-library.js";
import {
  tokenizerConfigSchema,
  idConfigSchema,
  tokenText,
  type TokenizerConfig,
  type IdConfig,
} from "./config.js";
import {
  compileChatTemplate,
  pickChatTemplate,
  renderChatTemplate,
  type ChatMessage,
  type ChatTemplateOptions,
  type TemplateTokens,
} from "./chat-template.js";

export type { ChatMessage, ChatTemplateOptions } from "./chat-template.js";

export interface EncodeOptions {
  /** Add the tokens the tokenizer wraps every text in (BOS for Llama, [CLS]/[SEP] for BERT). Default true, as in transformers. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (EOS, chat markers, ...) from the text. Default false. */
  skipSpecialTokens?: boolean;
  /**
   * transformers' clean-up (" ." → ".", " 's" → "'s"). Default: `clean_up_tokenization_spaces` from
   * tokenizer_config.json, else false (the Rust library never applies it; transformers ≥ 4.45 defaults to false).
   */
  cleanUpTokenizationSpaces?: boolean;
}

export interface Tokenizer {
  /** Number of ids, added tokens included (the largest id + 1). */
  readonly vocabSize: number;
  readonly bosTokenId?: number;
  /**
   * Ids that end a generation. The first is the tokenizer's own `eos_token` (the one appended to
   * training examples); the rest come from generation_config.json (e.g. chat models that stop on several).
   */
  readonly eosTokenIds: number[];
  /**
   * Padding id. When the model defines none we fall back to the first EOS id, as generation commonly
   * does; padded positions are masked, so the choice never reaches the loss.
   */
  readonly padTokenId?: number;
  /** The id the model gives pieces it has no token for; undefined for tokenizers that encode any text (byte-level BPE). */
  readonly unkTokenId?: number;
  /** What `encode(text, {addSpecialTokens: true})` puts before and after the text's own ids. */
  readonly specialPrefixIds: readonly number[];
  readonly specialSuffixIds: readonly number[];
  readonly hasChatTemplate: boolean;
  encode(text: string, options?: EncodeOptions): number[];
  /** The token strings of `encode` (an unknown piece keeps its own text, as in the Rust library's `Encoding.tokens`). */
  tokenize(text: string, options?: EncodeOptions): string[];
  decode(ids: readonly number[], options?: DecodeOptions): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions): string;
}

/** The files of a tokenizer, already parsed. Only `tokenizerJson` is required. */
export interface TokenizerParts {
  tokenizerJson: unknown;
  tokenizerConfig?: unknown;
  generationConfig?: unknown;
  modelConfig?: unknown;
  /** `chat_template.jinja`, which newer transformers writes instead of the config key. */
  chatTemplateFile?: string;
  /** Where the parts came from, for error messages. */
  files?: Partial<Record<"tokenizerJson" | "tokenizerConfig" | "generationConfig" | "modelConfig" | "chatTemplate", string>>;
}

/** Load the tokenizer in a model folder (a Hugging Face snapshot or a `save_pretrained` directory). */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const files = {
    tokenizerJson: join(dir, "tokenizer.json"),
    tokenizerConfig: join(dir, "tokenizer_config.json"),
    generationConfig: join(dir, "generation_config.json"),
    modelConfig: join(dir, "config.json"),
    chatTemplate: join(dir, "chat_template.jinja"),
  };
  const expected = 'a Hugging Face tokenizer.json ({"model": {...}, "added_tokens": [...], ...})';
  const [tokenizerJson, tokenizerConfig, generationConfig, modelConfig, chatTemplateFile] = await Promise.all([
    readJsonFile(files.tokenizerJson, "tokenizer", { expected }),
    readJsonFile(files.tokenizerConfig, "tokenizer", { optional: true }),
    readJsonFile(files.generationConfig, "config", { optional: true }),
    readJsonFile(files.modelConfig, "config", { optional: true }),
    readOptionalText(files.chatTemplate),
  ]);
  return tokenizerFromParts({ tokenizerJson, tokenizerConfig, generationConfig, modelConfig, chatTemplateFile, files });
}

/** Build a tokenizer from parsed files (for callers that fetched them some other way). */
export function tokenizerFromParts(parts: TokenizerParts): Tokenizer {
  const files = {
    tokenizerJson: parts.files?.tokenizerJson ?? "tokenizer.json",
    tokenizerConfig: parts.files?.tokenizerConfig ?? "tokenizer_config.json",
    generationConfig: parts.files?.generationConfig ?? "generation_config.json",
    modelConfig: parts.files?.modelConfig ?? "config.json",
    chatTemplate: parts.files?.chatTemplate ?? "chat_template.jinja",
  };
  const config = parseWith(tokenizerConfigSchema, parts.tokenizerConfig ?? {}, "tokenizer", { file: files.tokenizerConfig });
  const generationIds = parseWith(idConfigSchema, parts.generationConfig ?? {}, "config", { file: files.generationConfig });
  const modelIds = parseWith(idConfigSchema, parts.modelConfig ?? {}, "config", { file: files.modelConfig });
  const lib = constructJsTokenizer(parts.tokenizerJson, config, files.tokenizerJson);
  return new HfTokenizer(lib, config, generationIds, modelIds, parts.chatTemplateFile, files);
}

async function readOptionalText(path: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    fail("tokenizer", `cannot read the file (${(err as Error).message})`, { file: path }, err);
  }
}

function constructJsTokenizer(json: unknown, config: TokenizerConfig, file: string): JsTokenizer {
  if (!isPlainObject(json) || !isPlainObject(json.model)) {
    fail("tokenizer", 'expected a Hugging Face tokenizer.json: an object with "model": {...}', { file, field: "model" });
  }
  if (json.added_tokens !== undefined && !Array.isArray(json.added_tokens)) {
    fail("tokenizer", "expected a list of added tokens", { file, field: "added_tokens" });
  }
  // The Rust format lets these be absent; the JS constructor insists they exist (null is fine).
  const complete = {
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    ...json,
    added_tokens: json.added_tokens ?? [],
  };
  // The JS library compares special tokens as plain strings, so hand it the token texts.
  const libConfig = {
    ...config,
    bos_token: tokenText(config.bos_token),
    eos_token: tokenText(config.eos_token),
    pad_token: tokenText(config.pad_token),
    unk_token: tokenText(config.unk_token),
    additional_special_tokens: config.additional_special_tokens?.map((t) => tokenText(t)),
  };
  try {
    return newJsTokenizer(complete, libConfig);
  } catch (err) {
    fail("tokenizer", `@huggingface/tokenizers cannot load it: ${(err as Error).message}`, { file }, err);
  }
}

class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId?: number;
  readonly eosTokenIds: number[];
  readonly padTokenId?: number;
  readonly unkTokenId?: number;
  readonly specialPrefixIds: readonly number[];
  readonly specialSuffixIds: readonly number[];
  readonly hasChatTemplate: boolean;
  private readonly template?: Template;
  private readonly templateFile: string;
  private readonly templateTokens: TemplateTokens;
  private readonly cleanUpByDefault: boolean;

  constructor(
    private readonly lib: JsTokenizer,
    config: TokenizerConfig,
    generationIds: IdConfig,
    modelIds: IdConfig,
    chatTemplateFile: string | undefined,
    files: { tokenizerConfig: string; tokenizerJson: string; chatTemplate: string },
  ) {
    let maxId = -1;
    for (const id of lib.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.unkTokenId = lib.model.unk_token_id;

    // tokenizer_config.json names the tokens; generation_config.json, then config.json, give ids as a fallback.
    const idOf = (field: "bos_token" | "eos_token" | "pad_token"): number | undefined => {
      const text = tokenText(config[field]);
      if (text === undefined) return undefined;
      const id = lib.token_to_id(text);
      if (id === undefined) {
        fail("tokenizer", `${JSON.stringify(text)} is not a token of ${files.tokenizerJson}`, {
          file: files.tokenizerConfig,
          field,
        });
      }
      return id;
    };
    const eosFromConfig = idOf("eos_token");
    const eosIds = [...asList(eosFromConfig), ...asList(generationIds.eos_token_id)];
    if (eosIds.length === 0) eosIds.push(...asList(modelIds.eos_token_id));
    this.eosTokenIds = [...new Set(eosIds)];
    this.bosTokenId = idOf("bos_token") ?? generationIds.bos_token_id ?? modelIds.bos_token_id ?? undefined;
    this.padTokenId =
      idOf("pad_token") ?? generationIds.pad_token_id ?? modelIds.pad_token_id ?? this.eosTokenIds[0];

    const wrapping = specialWrapping(lib, files.tokenizerJson);
    // transformers lets add_bos_token / add_eos_token override what tokenizer.json's post-processor adds.
    this.specialPrefixIds = applyAddFlag(wrapping.prefix, config.add_bos_token, this.bosTokenId, "start");
    this.specialSuffixIds = applyAddFlag(wrapping.suffix, config.add_eos_token, eosFromConfig, "end");

    this.cleanUpByDefault = config.clean_up_tokenization_spaces ?? false;

    const fromConfig = pickChatTemplate(config.chat_template);
    const source = fromConfig ?? chatTemplateFile;
    this.templateFile = fromConfig !== undefined ? files.tokenizerConfig : files.chatTemplate;
    this.template = source === undefined ? undefined : compileChatTemplate(source, this.templateFile);
    this.hasChatTemplate = this.template !== undefined;
    this.templateTokens = {
      bos_token: tokenText(config.bos_token),
      eos_token: tokenText(config.eos_token),
      unk_token: tokenText(config.unk_token),
      pad_token: tokenText(config.pad_token),
    };
  }

  encode(text: string, { addSpecialTokens = true }: EncodeOptions = {}): number[] {
    const ids = this.lib.encode(text, { add_special_tokens: false }).ids;
    return addSpecialTokens ? [...this.specialPrefixIds, ...ids, ...this.specialSuffixIds] : ids;
  }

  tokenize(text: string, { addSpecialTokens = true }: EncodeOptions = {}): string[] {
    const tokens = this.lib.encode(text, { add_special_tokens: false }).tokens;
    if (!addSpecialTokens) return tokens;
    const texts = (ids: readonly number[]) => ids.map((id) => this.lib.id_to_token(id) ?? "");
    return [...texts(this.specialPrefixIds), ...tokens, ...texts(this.specialSuffixIds)];
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    // The JS library throws on an empty list; the Rust library returns "".
    if (ids.length === 0) return "";
    ids.forEach((id, index) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        fail("tokenizer", `id ${id} at index ${index} is not in the vocabulary (expected an integer in 0..${this.vocabSize - 1})`);
      }
    });
    return this.lib.decode([...ids], {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: options.cleanUpTokenizationSpaces ?? this.cleanUpByDefault,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.lib.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.lib.id_to_token(id);
  }

  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    if (this.template === undefined) {
      fail("tokenizer", "this tokenizer has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja)", {
        file: this.templateFile,
        field: "chat_template",
      });
    }
    return renderChatTemplate(this.template, messages, this.templateTokens, options, this.templateFile);
  }
}

function asList(ids: number | readonly number[] | null | undefined): number[] {
  if (ids === null || ids === undefined) return [];
  return typeof ids === "number" ? [ids] : [...ids];
}

/**
 * Find what the post-processor wraps a single text in, by encoding a probe both ways.
 * Single-text templates (TemplateProcessing, BERT, RoBERTa) add a fixed prefix and suffix,
 * so the ids found here apply to every text.
 */
function specialWrapping(lib: JsTokenizer, file: string): { prefix: number[]; suffix: number[] } {
  const probe = "Hello world";
  const plain = lib.encode(probe, { add_special_tokens: false }).ids;
  const full = lib.encode(probe, { add_special_tokens: true }).ids;
  for (let start = 0; start + plain.length <= full.length; start++) {
    if (plain.every((id, i) => full[start + i] === id)) {
      return { prefix: full.slice(0, start), suffix: full.slice(start + plain.length) };
    }
  }
  fail("tokenizer", "the post_processor changes the text's own tokens; expected it only to add special tokens around them", {
    file,
    field: "post_processor",
  });
}

function applyAddFlag(
  ids: readonly number[],
  flag: boolean | null | undefined,
  tokenId: number | undefined,
  where: "start" | "end",
): number[] {
  if (flag === null || flag === undefined || tokenId === undefined) return [...ids];
  if (!flag) return ids.filter((id) => id !== tokenId);
  if (ids.includes(tokenId)) return [...ids];
  return where === "start" ? [tokenId, ...ids] : [...ids, tokenId];
}

/** The id to pad batches with: the tokenizer's pad id (which already falls back to EOS), else 0. */
export function paddingId(tokenizer: Pick<Tokenizer, "padTokenId">): number {
  return tokenizer.padTokenId ?? 0;
}
