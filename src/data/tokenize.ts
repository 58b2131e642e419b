import { fail, type ErrorPlace } from "../util/errors.js";
import type { Tokenizer } from "../tokenizer/index.js";
import type { Example, ChatTurn } from "./example.js";

/** Label value the loss ignores (PyTorch's and transformers' convention). */
export const IGNORE_INDEX = -100;

/** What tokenizing needs from a tokenizer; tests can pass a small stand-in. */
export type DataTokenizer = Pick<Tokenizer, "encode" | "eosTokenIds" | "specialPrefixIds" | "applyChatTemplate">;

export interface TokenizeOptions {
  /** Longest sequence kept, in tokens, before the soft prompt is prepended. */
  maxLength: number;
  /**
   * Append the tokenizer's first EOS id after a completion or a text (and learn it), so the model
   * learns to stop. Default true. Chat examples never get one: their template closes each turn.
   */
  appendEos?: boolean;
}

export interface TokenizedExample {
  inputIds: number[];
  /**
   * Aligned with inputIds: labels[t] = inputIds[t] where the model must predict that token, else -100.
   * The model shifts internally (logits at t predict labels[t + 1]).
   */
  labels: number[];
  /** The example's task, kept for multi-task training (each row uses its task's prompt). */
  task?: string;
  /** The example's record as read (see Example.fields). */
  fields?: Readonly<Record<string, unknown>>;
  /** Rows rendered through a template (src/template): aligned with inputIds, the table row of the soft vector there, or -1 for the token's own embedding. */
  softIndex?: number[];
}

/**
 * Tokenize one example.
 * - prompt/completion: specialPrefix ++ encode(prompt) ++ encode(completion) ++ [eos]; only the completion
 *   and the eos are learned. The two texts are encoded separately, so the split is exact; the price is that
 *   a tokenizer may merge across the boundary differently than it would in one piece (Llama-style
 *   tokenizers give the completion its own leading "▁"). Put the separating space or newline where it
 *   would fall at inference time.
 * - chat: the template is rendered once and encoded once; each assistant turn is located by rendering the
 *   conversation up to it (with the generation prompt) and through it, and comparing token prefixes.
 *   The assistant's text and the template's end-of-turn tokens are learned.
 * - text: specialPrefix ++ encode(text) ++ [eos], every token learned.
 * Too long: prompt/completion and chat lose tokens from the left (never the part to learn; if that alone
 * is too long, it fails); text is cut at the end. `truncated` reports either.
 */
export function tokenizeExample(
  example: Example,
  tokenizer: DataTokenizer,
  options: TokenizeOptions,
): TokenizedExample & { truncated: boolean } {
  if (!Number.isInteger(options.maxLength) || options.maxLength < 1) {
    fail("usage", `maxLength must be a positive integer, got ${options.maxLength}`, { field: "maxLength" });
  }
  const tokenized = { ...tokenizeShape(example, tokenizer, options), ...(example.fields === undefined ? {} : { fields: example.fields }) };
  return example.task === undefined ? tokenized : { ...tokenized, task: example.task };
}

function tokenizeShape(example: Example, tokenizer: DataTokenizer, options: TokenizeOptions): TokenizedExample & { truncated: boolean } {
  switch (example.kind) {
    case "prompt":
      return tokenizePrompt(example, tokenizer, options);
    case "chat":
      return tokenizeChat(example, tokenizer, options);
    case "text":
      return tokenizeText(example, tokenizer, options);
  }
}

/** Tokenize a whole dataset, counting the examples that had to be shortened (callers warn). */
export function tokenizeExamples(
  examples: readonly Example[],
  tokenizer: DataTokenizer,
  options: TokenizeOptions,
): { items: TokenizedExample[]; truncated: number } {
  let truncated = 0;
  const items = examples.map((ex) => {
    const { truncated: cut, ...item } = tokenizeExample(ex, tokenizer, options);
    if (cut) truncated++;
    return item;
  });
  return { items, truncated };
}

function place(example: Example, field?: string): ErrorPlace {
  return { file: example.source?.file, line: example.source?.line, field };
}

function eosToAppend(tokenizer: DataTokenizer, options: TokenizeOptions, ids: readonly number[]): number[] {
  const eos = tokenizer.eosTokenIds[0];
  if (!(options.appendEos ?? true) || eos === undefined) return [];
  // The text may already end with the EOS token written out; do not learn two.
  return ids.at(-1) === eos ? [] : [eos];
}

function tokenizePrompt(
  example: Extract<Example, { kind: "prompt" }>,
  tokenizer: DataTokenizer,
  options: TokenizeOptions,
): TokenizedExample & { truncated: boolean } {
  const prefix = tokenizer.specialPrefixIds;
  let prompt = tokenizer.encode(example.prompt, { addSpecialTokens: false });
  const completion = tokenizer.encode(example.completion, { addSpecialTokens: false });
  if (completion.length === 0) {
    fail("data", "the completion encodes to no tokens; expected text for the model to learn", place(example, "completion"));
  }
  const target = [...completion, ...eosToAppend(tokenizer, options, completion)];

  const room = options.maxLength - prefix.length - target.length;
  if (room < 0) {
    fail(
      "data",
      `the completion alone is ${prefix.length + target.length} tokens, more than maxLength ${options.maxLength}; ` +
        "shorten it or raise maxLength (prompts are cut, completions never)",
      place(example, "completion"),
    );
  }
  const truncated = prompt.length > room;
  if (truncated) prompt = prompt.slice(prompt.length - room); // keep the end of the prompt, next to the completion

  return {
    inputIds: [...prefix, ...prompt, ...target],
    labels: [...prefix.map(() => IGNORE_INDEX), ...prompt.map(() => IGNORE_INDEX), ...target],
    truncated,
  };
}

function tokenizeText(
  example: Extract<Example, { kind: "text" }>,
  tokenizer: DataTokenizer,
  options: TokenizeOptions,
): TokenizedExample & { truncated: boolean } {
  const body = tokenizer.encode(example.text, { addSpecialTokens: false });
  if (body.length === 0) fail("data", "the text encodes to no tokens", place(example, "text"));
  const all = [...tokenizer.specialPrefixIds, ...body, ...eosToAppend(tokenizer, options, body)];
  const truncated = all.length > options.maxLength;
  const inputIds = truncated ? all.slice(0, options.maxLength) : all;
  return { inputIds, labels: [...inputIds], truncated };
}

function tokenizeChat(
  example: Extract<Example, { kind: "chat" }>,
  tokenizer: DataTokenizer,
  options: TokenizeOptions,
): TokenizedExample & { truncated: boolean } {
  const { messages } = example;
  const render = (turns: readonly ChatTurn[], addGenerationPrompt: boolean) =>
    tokenizer.applyChatTemplate(turns, { addGenerationPrompt });
  // The template writes its own BOS and markers; adding special tokens again would double them.
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });

  const full = render(messages, false);
  const ids = encode(full);
  const labels = ids.map(() => IGNORE_INDEX);
  let lastStart = -1;

  messages.forEach((turn, i) => {
    if (turn.role !== "assistant") return;
    const before = render(messages.slice(0, i), true); // up to the assistant header
    const through = render(messages.slice(0, i + 1), false); // through the end of this turn
    if (!through.startsWith(before) || !full.startsWith(through)) {
      fail(
        "data",
        "the chat template does not render this conversation prefix by prefix, so the assistant turn cannot be " +
          "located; expected render(messages[0..i]) + generation prompt to start render(messages[0..i+1])",
        place(example, `messages[${i}]`),
      );
    }
    // Token boundaries: where the encodings of the prefixes stop agreeing with the full encoding.
    const start = commonPrefixLength(encode(before), ids);
    const end = commonPrefixLength(encode(through), ids);
    for (let t = start; t < end; t++) labels[t] = ids[t];
    if (end > start) lastStart = start;
  });
  if (lastStart < 0) {
    fail("data", "no assistant turn produced any tokens to learn", place(example, "messages"));
  }

  // Keep the end; the final assistant turn must fit whole.
  const excess = ids.length - options.maxLength;
  if (excess > lastStart) {
    fail(
      "data",
      `the last assistant turn and what follows are ${ids.length - lastStart} tokens, more than maxLength ${options.maxLength}; ` +
        "shorten it or raise maxLength (earlier turns are cut, the last reply never)",
      place(example, "messages"),
    );
  }
  const truncated = excess > 0;
  return truncated
    ? { inputIds: ids.slice(excess), labels: labels.slice(excess), truncated }
    : { inputIds: ids, labels, truncated };
}

function commonPrefixLength(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}
