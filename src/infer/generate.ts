/**
 * Batched generation with a KV cache, for a frozen model with or without soft prompts.
 *
 * Rows are left-padded so every row's newest token is in the last column. Soft prompts enter as a
 * cached past (see kv-cache.ts): one batch may mix prompts, and rows without one. Positions are
 * described in layout.ts: by default each row gets what it would get alone (so a mixed batch gives
 * each request the tokens of its own call, and a single row matches HF/PEFT exactly); `positions:
 * "peft"` instead counts left padding in prompt rows as peft_model.generate() does.
 *
 * Greedy unless a request sets temperature > 0; then each request draws from its own seeded Rng.
 * Rows stop at an EOS id (kept as the last of `ids`, as HF does), at a stop string (`text` cut before
 * it) or after maxNewTokens; finished rows ride along with pad tokens until every row is done.
 */
import { fail } from "../util/errors.js";
import { Rng } from "../util/rng.js";
import type { CausalLM } from "../models/causal-lm.js";
import { attentionPattern } from "../models/inputs.js";
import type { Tensor } from "../runtime/session.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { applyRepetitionPenalty, sampleToken } from "./sampling.js";
import { StopMatcher } from "./stop.js";
import { type PromptCache, type PromptState, type SoftPrompt, batchPast, checkSoftPrompt, promptCacheFor } from "./kv-cache.js";
import { type PositionMode, checkIds, checkPositions, layoutBatch } from "./layout.js";
import { pastName, presentName, stepProgram } from "./step.js";

export type { SoftPrompt } from "./kv-cache.js";
export type { PositionMode } from "./layout.js";

export interface GenerateRequest {
  /** The input as token ids; or `text`, encoded with the tokenizer. Exactly one of the two. */
  inputIds?: readonly number[];
  text?: string;
  /** A soft prompt placed before the input (omit for the bare model). */
  prompt?: SoftPrompt;
  /** At least 1. */
  maxNewTokens: number;
  /** 0 or undefined: greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** HF's repetition_penalty over the request's own input and generated ids; 1 or undefined: off. */
  repetitionPenalty?: number;
  /** Stop when the generated text contains one of these (needs a tokenizer); the text is cut before it. */
  stop?: readonly string[];
  /** Seed of the request's own sampler (default 0): the same request draws the same tokens in any batch. */
  seed?: number;
}

export interface GenerateOptions {
  /** Ids that end a row; default: the tokenizer's `eosTokenIds` (none without a tokenizer). */
  eosTokenIds?: readonly number[];
  /** Filler for padding and finished rows; default: the tokenizer's pad id, else the first EOS id, else 0. Never attended to. */
  padTokenId?: number;
  /** Default "row": see layout.ts. */
  positions?: PositionMode;
  /** Where soft-prompt keys/values are kept; default: one cache per model, shared by every call. */
  promptCache?: PromptCache;
  /** For `text` inputs: add the tokenizer's special tokens (BOS …). Default true, as transformers. */
  addSpecialTokens?: boolean;
}

export type FinishReason = "eos" | "stop" | "length";

export interface Generation {
  /** The new tokens (an EOS that ended the row included). */
  ids: number[];
  /** The new tokens decoded (without the EOS, cut before a stop string), when there is a tokenizer. */
  text?: string;
  finishReason: FinishReason;
}

/** One request while it is being generated. */
interface Row {
  input: number[];
  prompt?: PromptState;
  request: GenerateRequest;
  rng: Rng;
  stop?: StopMatcher;
  ids: number[];
  /** Set when a stop string cut the text. */
  text?: string;
  finish?: FinishReason;
}

/** Continue each request's input (after its soft prompt, if any); results come back in request order. */
export async function generate(
  lm: CausalLM,
  tokenizer: Tokenizer | undefined,
  requests: readonly GenerateRequest[],
  options: GenerateOptions = {},
): Promise<Generation[]> {
  if (requests.length === 0) return [];
  const V = lm.config.vocabSize;
  const eos = new Set(options.eosTokenIds ?? tokenizer?.eosTokenIds ?? []);
  const padId = options.padTokenId ?? tokenizer?.padTokenId ?? [...eos][0] ?? 0;
  checkIds(lm, [padId], "padTokenId");
  const cache = options.promptCache ?? promptCacheFor(lm);
  if (cache.lm !== lm) fail("usage", "the prompt cache belongs to another model", { field: "promptCache" });
  const mode = options.positions ?? "row";

  // 1. Check every request and turn texts into ids.
  const inputs = requests.map((r, i) => checkRequest(lm, tokenizer, r, i, options.addSpecialTokens ?? true));

  // 2. Fetch each soft prompt's keys/values (computed once per distinct prompt, then cached).
  const prompts = await Promise.all(requests.map((r) => (r.prompt === undefined ? undefined : cache.get(r.prompt))));
  const rows: Row[] = requests.map((request, i) => ({
    input: inputs[i],
    prompt: prompts[i],
    request,
    rng: new Rng(request.seed ?? 0),
    stop: request.stop !== undefined && request.stop.length > 0 ? new StopMatcher([...request.stop]) : undefined,
    ids: [],
  }));

  // 3. Lay the rows out: left padding, per-row positions, the key mask over prompt columns + tokens.
  const layout = layoutBatch(rows.map((r) => ({ ids: r.input, numVirtual: r.prompt?.numVirtual ?? 0 })), mode, padId);
  rows.forEach((r, b) => checkPositions(lm, layout.nextPosition[b] + r.request.maxNewTokens - 2, `requests[${b}].maxNewTokens`));
  const weights = lm.weights.feeds();

  // 4. Prefill: the whole padded input (after the prompts' cached past, if any) → last logits and the cache.
  const withPrompts = layout.pastLength > 0;
  let out = await (await stepProgram(lm, withPrompts ? "step" : "prefill")).run({
    ...weights,
    ...(withPrompts ? batchPast(lm, prompts, layout.pastLength) : {}),
    input_ids: layout.inputIds,
    position_ids: layout.positions,
    allowed: attentionPattern(layout.keyMask, layout.width),
  });
  const decode = await stepProgram(lm, "step");
  const positions = [...layout.nextPosition];
  const keyMask = layout.keyMask;

  for (;;) {
    // 5. Pick each unfinished row's next token from its last logits (penalty, temperature, top-k/p).
    const logits = out.logits.data as Float32Array;
    rows.forEach((row, b) => {
      if (row.finish === undefined) pickNext(row, logits.subarray(b * V, (b + 1) * V), eos, tokenizer);
    });
    if (rows.every((r) => r.finish !== undefined)) break;

    // 6. Decode: feed the new tokens (pad for finished rows), one column more of keys, presents become the past.
    const live = rows.map((r) => r.finish === undefined);
    const next = new BigInt64Array(rows.map((r, b) => BigInt(live[b] ? r.ids[r.ids.length - 1] : padId)));
    for (const mask of keyMask) mask.push(1);
    out = await decode.run({
      ...weights,
      ...pastFrom(lm, out),
      input_ids: { data: next, dims: [rows.length, 1] },
      position_ids: { data: new BigInt64Array(positions.map((p, b) => BigInt(live[b] ? p : 0))), dims: [rows.length, 1] },
      allowed: attentionPattern(keyMask, 1),
    });
    positions.forEach((p, b) => (positions[b] = live[b] ? p + 1 : p));
  }

  // 7. Hand back each request's tokens, text and why it stopped.
  return rows.map((r) => {
    const text = r.text ?? tokenizer?.decode(r.finish === "eos" ? r.ids.slice(0, -1) : r.ids);
    return { ids: r.ids, ...(text !== undefined ? { text } : {}), finishReason: r.finish! };
  });
}

/** Choose a row's next token and decide whether the row is done. */
function pickNext(row: Row, rowLogits: Float32Array, eos: ReadonlySet<number>, tokenizer: Tokenizer | undefined): void {
  const { temperature, topK, topP, repetitionPenalty, maxNewTokens } = row.request;
  const scores =
    repetitionPenalty !== undefined && repetitionPenalty !== 1
      ? applyRepetitionPenalty(rowLogits, [...row.input, ...row.ids], repetitionPenalty)
      : rowLogits;
  const token = sampleToken(scores, { temperature, topK, topP, rng: row.rng });
  row.ids.push(token);
  if (eos.has(token)) row.finish = "eos";
  else if (row.stop !== undefined && tokenizer !== undefined) {
    // Stop strings may span tokens: match on the whole decoded output so far.
    const check = row.stop.check(tokenizer.decode(row.ids));
    if (check.stopped) {
      row.text = check.text;
      row.finish = "stop";
    }
  }
  if (row.finish === undefined && row.ids.length >= maxNewTokens) row.finish = "length";
}

/** The presents of the last run, fed back as the past of the next. */
function pastFrom(lm: CausalLM, out: Record<string, Tensor>): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (let i = 0; i < lm.config.numLayers; i++) {
    for (const kind of ["key", "value"] as const) feeds[pastName(i, kind)] = out[presentName(i, kind)];
  }
  return feeds;
}

/** A request's input ids, after checking everything about it that can be checked before running. */
function checkRequest(lm: CausalLM, tokenizer: Tokenizer | undefined, r: GenerateRequest, i: number, addSpecialTokens: boolean): number[] {
  const at = (field: string) => ({ field: `requests[${i}].${field}` });
  if ((r.inputIds === undefined) === (r.text === undefined)) fail("usage", "give either inputIds or text", at("inputIds"));
  let ids: number[];
  if (r.text !== undefined) {
    if (tokenizer === undefined) fail("usage", "a text input needs a tokenizer; pass one or give inputIds", at("text"));
    ids = tokenizer.encode(r.text, { addSpecialTokens });
  } else ids = [...r.inputIds!];
  if (ids.length === 0) fail("usage", "the input is empty: give at least one token to continue from", at(r.text !== undefined ? "text" : "inputIds"));
  checkIds(lm, ids, `requests[${i}].inputIds`);
  if (r.prompt !== undefined) checkSoftPrompt(lm, r.prompt, `requests[${i}].prompt`);
  if (!(Number.isInteger(r.maxNewTokens) && r.maxNewTokens >= 1)) fail("usage", `maxNewTokens must be an integer >= 1, got ${r.maxNewTokens}`, at("maxNewTokens"));
  if (r.temperature !== undefined && !(r.temperature >= 0 && Number.isFinite(r.temperature))) {
    fail("usage", `temperature must be a finite number >= 0, got ${r.temperature}`, at("temperature"));
  }
  if (r.topK !== undefined && !(Number.isInteger(r.topK) && r.topK >= 0)) fail("usage", `topK must be an integer >= 0, got ${r.topK}`, at("topK"));
  if (r.topP !== undefined && !(r.topP > 0 && r.topP <= 1)) fail("usage", `topP must be in (0, 1], got ${r.topP}`, at("topP"));
  if (r.repetitionPenalty !== undefined && !(r.repetitionPenalty > 0 && Number.isFinite(r.repetitionPenalty))) {
    fail("usage", `repetitionPenalty must be a finite number > 0, got ${r.repetitionPenalty}`, at("repetitionPenalty"));
  }
  if (r.seed !== undefined && !Number.isSafeInteger(r.seed)) fail("usage", `seed must be a safe integer, got ${r.seed}`, at("seed"));
  if (r.stop !== undefined && r.stop.length > 0) {
    if (tokenizer === undefined) fail("usage", "stop strings need a tokenizer to decode the output", at("stop"));
    if (r.stop.some((s) => typeof s !== "string" || s.length === 0)) fail("usage", "a stop string must be a non-empty string", at("stop"));
  }
  return ids;
}
