/**
 * Batched generation with a KV cache, for a frozen model with or without soft prompts: every request
 * joins a GenerationEngine (engine.ts) at its first step, and the engine steps until all are done.
 *
 * Soft prompts enter as a cached past (see kv-cache.ts), LoRA adapters as per-row factors in the step
 * programs (lora.ts): one batch may mix soft prompts, prefixes, LoRA adapters, and rows without any. Positions are described in layout.ts: by default each row gets what it would get alone (so a
 * mixed batch gives each request the tokens of its own call, and a single row matches HF/PEFT exactly);
 * `positions: "peft"` instead counts left padding in prompt rows as peft_model.generate() does — the
 * engine lays out rows that join at the same step together, and here they all join at the first.
 *
 * Greedy unless a request sets temperature > 0; then each request draws from its own seeded Rng.
 * Rows stop at an EOS id (kept as the last of `ids`, as HF does), at a stop string (`text` cut before
 * it) or after maxNewTokens, and leave the batch when they stop.
 */
import { fail } from "../util/errors.js";
import type { CausalLM } from "../models/causal-lm.js";
import { type Tokenizer, paddingId } from "../tokenizer/index.js";
import { type AdapterPrompt, type PromptCache, checkSoftPrompt, promptCacheFor } from "./kv-cache.js";
import type { PositionMode } from "./layout.js";
import { type DecodeOptions, type Generation, type RowId, GenerationEngine, checkRowRequest } from "./engine.js";

export type { AdapterPrompt, LoraPrompt, PrefixPrompt, SoftPrompt } from "./kv-cache.js";
export type { PositionMode } from "./layout.js";
export type { FinishReason, Generation } from "./engine.js";

export interface GenerateRequest extends DecodeOptions {
  /** The input as token ids; or `text`, encoded with the tokenizer. Exactly one of the two. */
  inputIds?: readonly number[];
  text?: string;
  /** The row's adapter: a soft prompt or prefix placed before the input, or a LoRA adapter (omit for the bare model). */
  prompt?: AdapterPrompt;
}

/** Options to generate ids that stop and pad as the tokenizer says, with no tokenizer passed, so nothing is decoded (distillation compares ids; a benchmark's stub tokenizer cannot decode; timed runs decode nothing). */
export const idsOnly = (tokenizer: Tokenizer): GenerateOptions => ({ eosTokenIds: tokenizer.eosTokenIds, padTokenId: paddingId(tokenizer) });

export interface GenerateOptions {
  /** Ids that end a row; default: the tokenizer's `eosTokenIds` (none without a tokenizer). */
  eosTokenIds?: readonly number[];
  /** Filler for padding; default: the tokenizer's pad id, else the first EOS id, else 0. Never attended to. */
  padTokenId?: number;
  /** Default "row": see layout.ts. */
  positions?: PositionMode;
  /** Where soft-prompt keys/values are kept; default: one cache per model, shared by every call. */
  promptCache?: PromptCache;
  /** For `text` inputs: add the tokenizer's special tokens (BOS …). Default true, as transformers. */
  addSpecialTokens?: boolean;
}

/** Continue each request's input (after its soft prompt, if any); results come back in request order. */
export async function generate(
  lm: CausalLM,
  tokenizer: Tokenizer | undefined,
  requests: readonly GenerateRequest[],
  options: GenerateOptions = {},
): Promise<Generation[]> {
  if (requests.length === 0) return [];
  const engine = new GenerationEngine(lm, { tokenizer, eosTokenIds: options.eosTokenIds, padTokenId: options.padTokenId, positions: options.positions });
  const cache = options.promptCache ?? promptCacheFor(lm);
  if (cache.lm !== lm) fail("usage", "the prompt cache belongs to another model", { field: "promptCache" });

  // 1. Check every request and turn texts into ids, before any prompt is computed.
  const inputs = requests.map((r, i) => checkRequest(lm, tokenizer, r, i, options.addSpecialTokens ?? true));

  // 2. Every row joins at the first step; each soft prompt's keys/values come from the cache (computed once per prompt).
  const ids = requests.map(({ text: _text, inputIds: _ids, prompt, ...decode }, i) =>
    engine.add({ ...decode, inputIds: inputs[i], prompt: prompt === undefined ? undefined : cache.get(prompt) }, `requests[${i}]`),
  );

  // 3. Step until every row is done: the first step prefills them all, each later one decodes a token per row.
  const done = new Map<RowId, Generation>();
  while (engine.size > 0) {
    for (const t of await engine.step()) if (t.done !== undefined) done.set(t.row, t.done);
  }
  return ids.map((id) => done.get(id)!);
}

/** A request's input ids, after checking everything about it that can be checked before running. */
function checkRequest(lm: CausalLM, tokenizer: Tokenizer | undefined, r: GenerateRequest, i: number, addSpecialTokens: boolean): number[] {
  const at = `requests[${i}]`;
  if ((r.inputIds === undefined) === (r.text === undefined)) fail("usage", "give either inputIds or text", { field: `${at}.inputIds` });
  let ids: number[];
  if (r.text !== undefined) {
    if (tokenizer === undefined) fail("usage", "a text input needs a tokenizer; pass one or give inputIds", { field: `${at}.text` });
    ids = tokenizer.encode(r.text, { addSpecialTokens });
    if (ids.length === 0) fail("usage", "the input is empty: give at least one token to continue from", { field: `${at}.text` });
  } else ids = [...r.inputIds!];
  checkRowRequest(lm, tokenizer, { ...r, inputIds: ids, prompt: undefined }, at);
  if (r.prompt !== undefined) checkSoftPrompt(lm, r.prompt, `${at}.prompt`);
  return ids;
}
