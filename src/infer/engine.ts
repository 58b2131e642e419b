/**
 * A step-level generation engine: a set of running rows that join and leave between decode steps (what
 * a server with continuous batching stands on; `generate` is a loop over it: add all, step until done).
 *
 * A row is its input ids, its prefix state (an adapter's keys/values — a soft prompt's, computed and
 * cached, or a prefix's — see kv-cache.ts; or a LoRA adapter, applied in the row's every forward — see
 * lora.ts; or none), its sampler (own seeded Rng, temperature, top-k/top-p, repetition penalty), its stop strings
 * and token limit, and its slot in the batch's KV cache. One `step()`:
 *  1. waits for the prefix states of the rows added since the last step;
 *  2. decodes one token for every running row, in one batched forward over the cache;
 *  3. prefills the joining rows together (layout.ts), which gives each its first token;
 *  4. lets finished and cancelled rows go and keeps the cache of the rest.
 *
 * The cache is per layer [B, kvHeads, capacity, headDim] on the host, `width` columns of it filled,
 * with a key mask per row. A prefill writes the joining rows' prompt keys/values into a new block, reads
 * them there in place (step.ts held prefill) and writes the tokens' columns after them; a decode step reads
 * the block in place (step.ts "decode") and returns only the new column, which is written after the filled ones. Rows that leave are compacted out in place, and rows
 * that join are copied, right-aligned, into the block's spare rows; only when the cache is full (or a
 * joining row is wider than the running ones) are every row's visible columns copied into a new block,
 * with room for the next power of two of rows and of columns (so a program per capacity, and few copies). Attention sees only the key mask and the positions, and positions are each row's own
 * (layout.ts "row"), so a row's tokens do not depend on which rows share its steps. When some rows of a
 * step have a LoRA adapter, the step runs the program variant for their target modules, each row
 * gathering its own adapter's factors (rows without one gather zeros). In "peft" mode,
 * rows that join at the same step are laid out together, as PEFT lays out one batch.
 */
import { fail } from "../util/errors.js";
import { Rng } from "../util/rng.js";
import type { CausalLM } from "../models/causal-lm.js";
import { attentionPattern } from "../models/inputs.js";
import type { Tensor } from "../runtime/session.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { type TokenLogprob, applyRepetitionPenalty, sampleToken, tokenLogprob } from "./sampling.js";
import { StopMatcher } from "./stop.js";
import type { PromptState } from "./kv-cache.js";
import { type BatchLayout, type PositionMode, checkIds, checkPositions, layoutBatch } from "./layout.js";
import { decodeProgram, heldPrefillProgram, pastName, presentName, stepProgram } from "./step.js";
import { LoraBatcher, checkLoraPrompt } from "./lora.js";

/** How a row continues: its token limit, sampler and stop strings. */
export interface DecodeOptions {
  /** At least 1. */
  maxNewTokens: number;
  /** 0 or undefined: greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** HF's repetition_penalty over the row's own input and generated ids; 1 or undefined: off. */
  repetitionPenalty?: number;
  /** Stop when the generated text contains one of these (needs a tokenizer); the text is cut before it. */
  stop?: readonly string[];
  /** Seed of the row's own sampler (default 0): the same row draws the same tokens in any batch. */
  seed?: number;
  /** Report each new token's log-probability and this many most likely alternatives' (0 to 20; 0: the token's only); omit for none. */
  logprobs?: number;
}

export interface RowRequest extends DecodeOptions {
  /** At least one token to continue from. */
  inputIds: readonly number[];
  /** The keys/values before the row's tokens, or its LoRA adapter (a PromptCache entry), or the promise of them (awaited at the row's first step); omit for none. */
  prompt?: PromptState | PromiseLike<PromptState>;
}

export interface EngineOptions {
  /** Decodes texts, and is needed for stop strings. */
  tokenizer?: Tokenizer;
  /** Ids that end a row; default: the tokenizer's `eosTokenIds` (none without a tokenizer). */
  eosTokenIds?: readonly number[];
  /** Filler for left padding at prefill; default: the tokenizer's pad id, else the first EOS id, else 0. Never attended to. */
  padTokenId?: number;
  /** Default "row": see layout.ts. */
  positions?: PositionMode;
}

export type FinishReason = "eos" | "stop" | "length";

export interface Generation {
  /** The new tokens (an EOS that ended the row included). */
  ids: number[];
  /** The new tokens decoded (without the EOS, cut before a stop string), when there is a tokenizer. */
  text?: string;
  finishReason: FinishReason;
}

export type RowId = number;

/** One token a row produced in a step. */
export interface RowToken {
  row: RowId;
  token: number;
  /** When the row asked for `logprobs`. */
  logprob?: TokenLogprob;
  /** On the row's last token: its whole generation. The row has left the engine. */
  done?: Generation;
}

/** Keys/values of a batch: per layer [B, kvHeads, capacity, headDim], the first `width` columns filled; row b sees the columns where keyMask[b] is 1. */
interface KvBlock {
  past: Record<string, Tensor>;
  width: number;
  capacity: number;
  keyMask: number[][];
  /** Rows each tensor's buffer has room for (a compacted block keeps the room of the rows that left). */
  room: number;
}

interface Row {
  id: RowId;
  input: number[];
  /** Pending until the row's first step. */
  prompt?: PromiseLike<PromptState>;
  state?: PromptState;
  options: DecodeOptions;
  rng: Rng;
  stop?: StopMatcher;
  ids: number[];
  /** Set when a stop string cut the text. */
  text?: string;
  finish?: FinishReason;
  cancelled: boolean;
  /** Field prefix for errors about this row. */
  at: string;
  /** Position of the next token fed. */
  position: number;
  /** The row's index in the engine's cache block. */
  slot: number;
}

/**
 * The running rows of one model. Not re-entrant: await each `step()` before the next; `add` and
 * `cancel` may be called at any time (a row added during a step joins at the next one).
 *
 *   const engine = new GenerationEngine(lm, { tokenizer });
 *   const id = engine.add({ inputIds, prompt: promptCache.get(softPrompt), maxNewTokens: 16 });
 *   while (engine.size > 0) for (const { row, token, done } of await engine.step()) …
 */
export class GenerationEngine {
  private readonly tokenizer: Tokenizer | undefined;
  private readonly eos: ReadonlySet<number>;
  private readonly padId: number;
  private readonly mode: PositionMode;
  /** Every row added and not yet finished or cancelled. */
  private readonly live = new Map<RowId, Row>();
  /** Added since the last step began. */
  private joining: Row[] = [];
  /** In the cache, in slot order unless a cancel left a gap. */
  private running: Row[] = [];
  private cache: KvBlock | undefined;
  private nextId = 0;
  private stepping = false;
  /** The stacked factors of the LoRA adapters of recent batches. */
  private readonly lora: LoraBatcher;

  constructor(
    readonly lm: CausalLM,
    options: EngineOptions = {},
  ) {
    this.tokenizer = options.tokenizer;
    this.eos = new Set(options.eosTokenIds ?? options.tokenizer?.eosTokenIds ?? []);
    this.padId = options.padTokenId ?? options.tokenizer?.padTokenId ?? [...this.eos][0] ?? 0;
    checkIds(lm, [this.padId], "padTokenId");
    this.mode = options.positions ?? "row";
    this.lora = new LoraBatcher(lm);
  }

  /** Rows added and not yet finished or cancelled. */
  get size(): number {
    return this.live.size;
  }

  /** Queue a row; it is prefilled at the next step (with the other rows joining then) and produces a token every step after. */
  add(request: RowRequest, at = "request"): RowId {
    checkRowRequest(this.lm, this.tokenizer, request, at);
    const { prompt, inputIds, ...options } = request;
    const row: Row = {
      id: this.nextId++,
      input: [...inputIds],
      options,
      rng: new Rng(options.seed ?? 0),
      stop: options.stop !== undefined && options.stop.length > 0 ? new StopMatcher([...options.stop]) : undefined,
      ids: [],
      cancelled: false,
      at,
      position: 0,
      slot: -1,
    };
    if (prompt !== undefined && isPromiseLike(prompt)) {
      // Awaited at the row's first step, which reports a rejection; handled here so it is not reported as unhandled before.
      const pending = Promise.resolve(prompt);
      pending.catch(() => undefined);
      row.prompt = pending;
    } else {
      row.state = prompt;
      checkRowFits(this.lm, row, (prompt?.numVirtual ?? 0) + row.input.length);
    }
    this.live.set(row.id, row);
    this.joining.push(row);
    return row.id;
  }

  /** Stop a row now; its slot of the cache goes at the next step. False when the row is unknown or already done. */
  cancel(id: RowId): boolean {
    const row = this.live.get(id);
    if (row === undefined) return false;
    row.cancelled = true;
    this.live.delete(id);
    this.joining = this.joining.filter((r) => r !== row);
    this.running = this.running.filter((r) => r !== row);
    return true;
  }

  /**
   * One token for every row: a decode step for the running rows, a prefill for the joining ones.
   * A joining row whose prompt failed, or whose tokens would not fit the model's positions, rejects the
   * step before anything runs; that row is dropped and the others stay queued.
   */
  async step(): Promise<RowToken[]> {
    if (this.stepping) fail("usage", "step() was called while a step is running: await each step before the next", { op: "GenerationEngine.step" });
    this.stepping = true;
    try {
      return await this.advance();
    } finally {
      this.stepping = false;
    }
  }

  private async advance(): Promise<RowToken[]> {
    // 1. The joining rows' prefix states, and their layout for the prefill.
    const joining = this.joining.length > 0 ? await this.resolveJoining(this.joining.splice(0)) : undefined;
    const running = this.running;
    const tokens: RowToken[] = [];
    try {
      // 2. Decode: one token for every running row, one column more of cache.
      const decoded = running.length > 0 ? await this.decode(running, tokens) : undefined;
      // 3. Prefill: the joining rows' first tokens, and their cache.
      const prefilled = joining !== undefined ? await this.prefill(joining.rows, joining.layout, tokens, running.length === 0) : undefined;
      // 4. Keep the cache of the rows that go on.
      this.keep([
        ...running.map((row, slot) => ({ row, block: decoded!, slot })),
        ...(joining?.rows ?? []).map((row, slot) => ({ row, block: prefilled!, slot })),
      ]);
    } catch (err) {
      // A failed forward leaves no cache to go on from: the rows of this step are gone.
      for (const row of [...running, ...(joining?.rows ?? [])]) this.live.delete(row.id);
      this.running = [];
      this.cache = undefined;
      throw err;
    }
    return tokens;
  }

  /** Each running row's last token after its cache → its next token; its new column is written into the cache. */
  private async decode(rows: readonly Row[], tokens: RowToken[]): Promise<KvBlock> {
    let block = this.cache!;
    if (rows.length !== block.keyMask.length || rows.some((r, i) => r.slot !== i)) {
      block = compactRows(this.lm, block, rows.map((r) => r.slot)); // a cancel left a gap
    }
    const B = rows.length;
    const lora = this.lora.batch(rows.map((r) => r.state?.lora));
    const out = await (await decodeProgram(this.lm, block.capacity, lora)).run({
      ...this.lm.weights.feeds(),
      ...lora?.feeds,
      ...block.past,
      input_ids: { data: BigInt64Array.from(rows, (r) => BigInt(r.ids[r.ids.length - 1])), dims: [B, 1] },
      position_ids: { data: BigInt64Array.from(rows, (r) => BigInt(r.position++)), dims: [B, 1] },
      allowed: decodePattern(block),
    });
    this.pick(rows, out.logits.data as Float32Array, tokens);
    appendColumn(this.lm, block, out);
    return block;
  }

  /**
   * The joining rows' padded inputs, after their prompts' keys/values if any → their first tokens and a new cache
   * block with room for the next columns (and, when no rows are running, for more rows): the prompts' keys/values
   * are written into it and read there in place (step.ts held prefill), and the tokens' own columns written after them.
   */
  private async prefill(rows: readonly Row[], layout: BatchLayout, tokens: RowToken[], roomForRows: boolean): Promise<KvBlock> {
    const width = layout.pastLength + layout.width;
    const block = emptyBlock(this.lm, rows.length, capacityFor(width), roomForRows);
    const lora = this.lora.batch(rows.map((r) => r.state?.lora));
    const feeds = { ...this.lm.weights.feeds(), ...lora?.feeds, input_ids: layout.inputIds, position_ids: layout.positions };
    let out: Record<string, Tensor>;
    if (layout.pastLength > 0) {
      writePrompts(this.lm, block, rows.map((r) => r.state), layout.pastLength);
      // Keys: the block's columns (the prompts' filled, the rest masked), then the tokens'.
      const keyMask = layout.keyMask.map((mask) => [...mask.slice(0, layout.pastLength), ...new Array<number>(block.capacity - layout.pastLength).fill(0), ...mask.slice(layout.pastLength)]);
      const program = await heldPrefillProgram(this.lm, block.capacity, lora);
      out = await program.run({ ...feeds, ...block.past, allowed: attentionPattern(keyMask, layout.width) });
    } else {
      out = await (await stepProgram(this.lm, "prefill", lora)).run({ ...feeds, allowed: attentionPattern(layout.keyMask, layout.width) });
    }
    rows.forEach((r, b) => (r.position = layout.nextPosition[b]));
    this.pick(rows, out.logits.data as Float32Array, tokens);
    writeColumns(this.lm, block, out, layout.pastLength, layout.width);
    return { ...block, width, keyMask: layout.keyMask };
  }

  /**
   * The rows that go on become the running set, the running rows first: the decoded block in place when it has room
   * for the next column (rows that left compacted out, joining rows copied into the room after the others); else
   * everyone's columns gathered into a new block.
   */
  private keep(parts: readonly { row: Row; block: KvBlock; slot: number }[]): void {
    const staying = parts.filter((p) => p.row.finish === undefined && !p.row.cancelled);
    const oneBlock = parts.every((p) => p.block === parts[0].block);
    const before = [this.cache, ...parts.map((p) => p.block)];
    if (staying.length === 0) this.cache = undefined;
    else if (oneBlock && parts[0].block.width < parts[0].block.capacity) {
      this.cache = staying.length === parts.length ? parts[0].block : compactRows(this.lm, parts[0].block, staying.map((p) => p.slot));
    } else this.cache = joinInPlace(this.lm, parts[0].block, staying) ?? gatherRows(this.lm, staying);
    const kept = this.cache === undefined ? undefined : blockBuffer(this.cache);
    for (const block of before) if (block !== undefined && blockBuffer(block) !== kept) releaseBuffer(this.lm, blockBuffer(block));
    staying.forEach((p, slot) => (p.row.slot = slot));
    this.running = staying.map((p) => p.row);
  }

  /** Wait for the rows' prompts and lay them out; on a failure, drop the failing rows, requeue the rest, and throw. */
  private async resolveJoining(rows: Row[]) {
    const settled = await Promise.allSettled(rows.map((r) => r.prompt));
    const failed = new Set<Row>();
    let error: unknown;
    const drop = (row: Row, err: unknown) => {
      failed.add(row);
      error ??= err;
      this.live.delete(row.id);
    };
    settled.forEach((s, b) => {
      if (s.status === "rejected") drop(rows[b], s.reason);
      else if (s.value !== undefined) {
        rows[b].state = s.value;
        rows[b].prompt = undefined;
      }
    });
    let ready = rows.filter((r) => !failed.has(r) && !r.cancelled);
    for (const row of ready) {
      try {
        if (row.state !== undefined) checkPromptState(this.lm, row.state, `${row.at}.prompt`);
      } catch (err) {
        drop(row, err);
      }
    }
    ready = ready.filter((r) => !failed.has(r));
    const layout = layoutBatch(ready.map((r) => ({ ids: r.input, numVirtual: r.state?.numVirtual ?? 0 })), this.mode, this.padId);
    ready.forEach((row, b) => {
      try {
        checkRowFits(this.lm, row, layout.nextPosition[b]);
      } catch (err) {
        drop(row, err);
      }
    });
    if (failed.size > 0) {
      this.joining.unshift(...ready.filter((r) => !failed.has(r)));
      throw error;
    }
    return ready.length > 0 ? { rows: ready, layout } : undefined;
  }

  /** Choose each row's next token from its logits; report it, and the row's generation if it is done. */
  private pick(rows: readonly Row[], logits: Float32Array, tokens: RowToken[]): void {
    const V = this.lm.config.vocabSize;
    rows.forEach((row, b) => {
      if (row.cancelled) return;
      const rowLogits = logits.subarray(b * V, (b + 1) * V);
      const token = this.nextToken(row, rowLogits);
      const logprob = row.options.logprobs !== undefined ? { logprob: tokenLogprob(rowLogits, token, row.options.logprobs) } : {};
      if (row.finish === undefined) tokens.push({ row: row.id, token, ...logprob });
      else {
        this.live.delete(row.id);
        const text = row.text ?? this.tokenizer?.decode(row.finish === "eos" ? row.ids.slice(0, -1) : row.ids);
        tokens.push({ row: row.id, token, ...logprob, done: { ids: row.ids, ...(text !== undefined ? { text } : {}), finishReason: row.finish } });
      }
    });
  }

  /** Penalty, temperature, top-k/p, draw; then whether the row is done (EOS, a stop string, its limit). */
  private nextToken(row: Row, rowLogits: Float32Array): number {
    const { temperature, topK, topP, repetitionPenalty, maxNewTokens } = row.options;
    const scores =
      repetitionPenalty !== undefined && repetitionPenalty !== 1
        ? applyRepetitionPenalty(rowLogits, [...row.input, ...row.ids], repetitionPenalty)
        : rowLogits;
    const token = sampleToken(scores, { temperature, topK, topP, rng: row.rng });
    row.ids.push(token);
    if (this.eos.has(token)) row.finish = "eos";
    else if (row.stop !== undefined && this.tokenizer !== undefined) {
      // Stop strings may span tokens: match on the whole decoded output so far.
      const check = row.stop.check(this.tokenizer.decode(row.ids));
      if (check.stopped) {
        row.text = check.text;
        row.finish = "stop";
      }
    }
    if (row.finish === undefined && row.ids.length >= maxNewTokens) row.finish = "length";
    return token;
  }
}

/** Everything about a row that can be checked before it runs (its prompt's size aside, known only once computed). */
export function checkRowRequest(lm: CausalLM, tokenizer: Tokenizer | undefined, r: RowRequest, at = "request"): void {
  const field = (name: string) => ({ field: `${at}.${name}` });
  if (r.inputIds.length === 0) fail("usage", "the input is empty: give at least one token to continue from", field("inputIds"));
  checkIds(lm, r.inputIds, `${at}.inputIds`);
  if (!(Number.isInteger(r.maxNewTokens) && r.maxNewTokens >= 1)) fail("usage", `maxNewTokens must be an integer >= 1, got ${r.maxNewTokens}`, field("maxNewTokens"));
  if (r.temperature !== undefined && !(r.temperature >= 0 && Number.isFinite(r.temperature))) {
    fail("usage", `temperature must be a finite number >= 0, got ${r.temperature}`, field("temperature"));
  }
  if (r.topK !== undefined && !(Number.isInteger(r.topK) && r.topK >= 0)) fail("usage", `topK must be an integer >= 0, got ${r.topK}`, field("topK"));
  if (r.topP !== undefined && !(r.topP > 0 && r.topP <= 1)) fail("usage", `topP must be in (0, 1], got ${r.topP}`, field("topP"));
  if (r.repetitionPenalty !== undefined && !(r.repetitionPenalty > 0 && Number.isFinite(r.repetitionPenalty))) {
    fail("usage", `repetitionPenalty must be a finite number > 0, got ${r.repetitionPenalty}`, field("repetitionPenalty"));
  }
  if (r.seed !== undefined && !Number.isSafeInteger(r.seed)) fail("usage", `seed must be a safe integer, got ${r.seed}`, field("seed"));
  if (r.logprobs !== undefined && !(Number.isInteger(r.logprobs) && r.logprobs >= 0 && r.logprobs <= MAX_TOP_LOGPROBS)) {
    fail("usage", `logprobs must be an integer from 0 to ${MAX_TOP_LOGPROBS}, got ${r.logprobs}`, field("logprobs"));
  }
  if (r.stop !== undefined && r.stop.length > 0) {
    if (tokenizer === undefined) fail("usage", "stop strings need a tokenizer to decode the output", field("stop"));
    if (r.stop.some((s) => typeof s !== "string" || s.length === 0)) fail("usage", "a stop string must be a non-empty string", field("stop"));
  }
}

/** The most alternatives a row may ask log-probabilities for (OpenAI's chat limit). */
export const MAX_TOP_LOGPROBS = 20;

/** A prompt state must come from this model: one [1, kvHeads, n, headDim] pair per layer; or a LoRA adapter's, with none. */
function checkPromptState(lm: CausalLM, state: PromptState, field: string): void {
  if (state.lora !== undefined) {
    if (state.numVirtual !== 0 || state.layers.length !== 0) fail("usage", "a row takes one adapter: a LoRA state has no virtual tokens", { field });
    return checkLoraPrompt(lm, state.lora, `${field}.lora`);
  }
  const { numLayers, numKvHeads, headDim } = lm.config;
  const size = numKvHeads * state.numVirtual * headDim;
  if (state.layers.length !== numLayers || state.layers.some((l) => l.key.length !== size || l.value.length !== size)) {
    fail("usage", `the prompt's keys/values do not fit this model (expected ${numLayers} layers of [1, ${numKvHeads}, ${state.numVirtual}, ${headDim}])`, { field });
  }
}

/** The last token fed (the one before the row's last new token) must have a position the model has. */
function checkRowFits(lm: CausalLM, row: Row, firstNewPosition: number): void {
  checkPositions(lm, firstNewPosition + row.options.maxNewTokens - 2, `${row.at}.maxNewTokens`);
}

/** Columns of a cache that holds `width`: the next power of two above it (at least 16), so decode programs are few. */
function capacityFor(width: number): number {
  return Math.max(16, 2 ** Math.ceil(Math.log2(width + 1)));
}

/**
 * Rows joining a running block without a new one: the running rows that stay are compacted in place, and each
 * joining row's visible columns are copied, right-aligned to the running width, into the room after them — a join
 * costs a copy of the joining rows' cache only (a whole new block at 32 rows of GPT-2 small is ~150 MB, written into
 * fresh pages). Undefined when it cannot be done in place: no room for the rows or for the next column, or a joining
 * row longer than the running width.
 */
function joinInPlace(lm: CausalLM, running: KvBlock, staying: readonly { block: KvBlock; slot: number }[]): KvBlock | undefined {
  const own = staying.filter((p) => p.block === running);
  const joining = staying.filter((p) => p.block !== running);
  const runs = joining.map(({ block, slot }) => visibleRuns(block.keyMask[slot]));
  const lengths = runs.map((rs) => rs.reduce((n, [start, end]) => n + end - start, 0));
  const { width, capacity } = running;
  if (width >= capacity || staying.length > running.room || lengths.some((n) => n > width)) return undefined;
  const kept = compactRows(lm, running, own.map((p) => p.slot));
  const { numLayers, numKvHeads: H, headDim: hd } = lm.config;
  const past: Record<string, Tensor> = {};
  for (let i = 0; i < numLayers; i++) {
    for (const kind of ["key", "value"] as const) {
      const name = pastName(i, kind);
      const view = kept.past[name].data as Float32Array;
      const data = new Float32Array(view.buffer, view.byteOffset, staying.length * H * capacity * hd);
      joining.forEach((part, j) => copyVisible(lm, part, name, runs[j], { data, row: own.length + j, capacity, start: width - lengths[j] }));
      past[name] = { data, dims: [staying.length, H, capacity, hd] };
    }
  }
  const joinedMasks = lengths.map((n) => Array.from({ length: width }, (_, c) => (c < width - n ? 0 : 1)));
  return { past, width, capacity, keyMask: [...kept.keyMask, ...joinedMasks], room: running.room };
}

/**
 * Copy each part's visible key columns, right-aligned, into one new batch with room to grow (part b becomes row b):
 * room for the next power of two of columns and of rows, so later steps and joins write in place.
 */
function gatherRows(lm: CausalLM, parts: readonly { block: KvBlock; slot: number }[]): KvBlock {
  const { numLayers } = lm.config;
  const runs = parts.map(({ block, slot }) => visibleRuns(block.keyMask[slot]));
  const lengths = runs.map((rs) => rs.reduce((n, [start, end]) => n + end - start, 0));
  const width = Math.max(...lengths);
  const { past, capacity, room } = emptyBlock(lm, parts.length, capacityFor(width), true);
  for (let i = 0; i < numLayers; i++) {
    for (const kind of ["key", "value"] as const) {
      const name = pastName(i, kind);
      const data = past[name].data as Float32Array;
      parts.forEach((part, b) => copyVisible(lm, part, name, runs[b], { data, row: b, capacity, start: width - lengths[b] }));
    }
  }
  const keyMask = lengths.map((n) => Array.from({ length: width }, (_, c) => (c < width - n ? 0 : 1)));
  return { past, width, capacity, keyMask, room };
}

/**
 * Per model, the buffer of the last cache block an engine let go (the largest, when several), handed to the next block
 * that fits in it: a block is garbage until V8 collects it, so without this a new block (a generate call's, a gather's)
 * sat beside the last one (measured: +33 MB of peak RSS over repeated generate calls at batch 8 on GPT-2 small).
 * Holds one block's bytes while the model is idle.
 */
const spareBuffers = new WeakMap<CausalLM, ArrayBuffer>();

function releaseBuffer(lm: CausalLM, buffer: ArrayBuffer): void {
  if (buffer.byteLength > (spareBuffers.get(lm)?.byteLength ?? 0)) spareBuffers.set(lm, buffer);
}

/** The spare buffer zeroed, when it holds `bytes`; else a new one (zeroed). */
function takeBuffer(lm: CausalLM, bytes: number): ArrayBuffer {
  const spare = spareBuffers.get(lm);
  if (spare === undefined || spare.byteLength < bytes) return new ArrayBuffer(bytes);
  spareBuffers.delete(lm);
  new Uint8Array(spare, 0, bytes).fill(0); // masked columns are read too: no stale values, no other request's keys
  return spare;
}

const blockBuffer = (block: KvBlock): ArrayBuffer => block.past[pastName(0, "key")].data.buffer as ArrayBuffer;

/**
 * Zeroed keys/values for `rows` rows of `capacity` columns; with `roomForRows`, room for the next power of two of rows.
 * One buffer for every layer's keys and values: a large allocation is the allocator's own mapping, returned to the
 * system when the block goes, where per-tensor buffers of a few MB stay in its heap (measured: +40 MB of peak RSS
 * over repeated generate calls at batch 8 on GPT-2 small).
 */
function emptyBlock(lm: CausalLM, rows: number, capacity: number, roomForRows: boolean): Pick<KvBlock, "past" | "capacity" | "room"> {
  const { numLayers, numKvHeads: H, headDim: hd } = lm.config;
  const room = roomForRows ? 2 ** Math.ceil(Math.log2(rows)) : rows;
  const size = room * H * capacity * hd;
  const buffer = takeBuffer(lm, 2 * numLayers * size * Float32Array.BYTES_PER_ELEMENT);
  const past: Record<string, Tensor> = {};
  for (let i = 0; i < numLayers; i++) {
    (["key", "value"] as const).forEach((kind, k) => {
      const data = new Float32Array(buffer, (2 * i + k) * size * Float32Array.BYTES_PER_ELEMENT, size).subarray(0, rows * H * capacity * hd);
      past[pastName(i, kind)] = { data, dims: [rows, H, capacity, hd] };
    });
  }
  return { past, capacity, room };
}

/** One row's visible columns (`runs`) of the cache tensor `name`, per head, into row `row` of `to` from column `start` on. */
function copyVisible(
  lm: CausalLM,
  { block, slot }: { block: KvBlock; slot: number },
  name: string,
  runs: readonly [number, number][],
  to: { data: Float32Array; row: number; capacity: number; start: number },
): void {
  const { numKvHeads: H, headDim: hd } = lm.config;
  const src = block.past[name].data as Float32Array;
  for (let h = 0; h < H; h++) {
    const from = (slot * H + h) * block.capacity;
    let at = ((to.row * H + h) * to.capacity + to.start) * hd;
    for (const [start, end] of runs) {
      to.data.set(src.subarray((from + start) * hd, (from + end) * hd), at);
      at += (end - start) * hd;
    }
  }
}

/** Keep only the rows in `slots` (ascending), moved down in place to rows 0, 1, …: rows that left cost no copy of the others' cache. */
function compactRows(lm: CausalLM, block: KvBlock, slots: readonly number[]): KvBlock {
  const { numLayers, numKvHeads: H, headDim: hd } = lm.config;
  const rowSize = H * block.capacity * hd;
  const past: Record<string, Tensor> = {};
  for (let i = 0; i < numLayers; i++) {
    for (const kind of ["key", "value"] as const) {
      const name = pastName(i, kind);
      const data = block.past[name].data as Float32Array;
      slots.forEach((slot, b) => {
        if (slot !== b) data.copyWithin(b * rowSize, slot * rowSize, (slot + 1) * rowSize);
      });
      past[name] = { data: data.subarray(0, slots.length * rowSize), dims: [slots.length, H, block.capacity, hd] };
    }
  }
  return { past, width: block.width, capacity: block.capacity, keyMask: slots.map((slot) => block.keyMask[slot]), room: block.room };
}

/** allowed [B, 1, 1, capacity + 1] of a decode step: each row's visible cache columns, then its new token. */
function decodePattern({ keyMask, capacity }: KvBlock): Tensor<Uint8Array> {
  const keys = capacity + 1;
  const data = new Uint8Array(keyMask.length * keys);
  keyMask.forEach((mask, b) => {
    data.set(mask, b * keys);
    data[b * keys + capacity] = 1;
  });
  return { data, dims: [keyMask.length, 1, 1, keys] };
}

/** Write each layer's new key/value column (the last of its presents) after the block's filled columns. */
function appendColumn(lm: CausalLM, block: KvBlock, out: Record<string, Tensor>): void {
  writeColumns(lm, block, out, block.width, 1);
  for (const mask of block.keyMask) mask.push(1);
  block.width++;
}

/**
 * The last `columns` of each layer's presents [B, kvHeads, T, headDim] into the block from column `at` on: the new
 * tokens' (T is more for a family whose attention joins the past itself).
 */
function writeColumns(lm: CausalLM, block: Pick<KvBlock, "past" | "capacity">, out: Record<string, Tensor>, at: number, columns: number): void {
  const { numLayers, numKvHeads: H, headDim: hd } = lm.config;
  for (let i = 0; i < numLayers; i++) {
    for (const kind of ["key", "value"] as const) {
      const present = out[presentName(i, kind)];
      const src = present.data as Float32Array;
      const [B, , T] = present.dims;
      const dst = block.past[pastName(i, kind)].data as Float32Array;
      for (let bh = 0; bh < B * H; bh++) dst.set(src.subarray((bh * T + T - columns) * hd, (bh + 1) * T * hd), (bh * block.capacity + at) * hd);
    }
  }
}

/** Each row's prompt keys/values (kv-cache.ts PromptState) into the block, right-aligned to end at column `end`. */
function writePrompts(lm: CausalLM, block: Pick<KvBlock, "past" | "capacity">, prompts: readonly (PromptState | undefined)[], end: number): void {
  const { numLayers, numKvHeads: H, headDim: hd } = lm.config;
  for (let i = 0; i < numLayers; i++) {
    for (const kind of ["key", "value"] as const) {
      const dst = block.past[pastName(i, kind)].data as Float32Array;
      prompts.forEach((p, b) => {
        const n = p?.numVirtual ?? 0;
        if (n === 0) return;
        const src = p!.layers[i][kind];
        for (let h = 0; h < H; h++) dst.set(src.subarray(h * n * hd, (h + 1) * n * hd), ((b * H + h) * block.capacity + end - n) * hd);
      });
    }
  }
}

/** [start, end) column ranges where the mask is 1. */
function visibleRuns(mask: readonly number[]): [number, number][] {
  const runs: [number, number][] = [];
  let start = -1;
  for (let c = 0; c <= mask.length; c++) {
    const visible = c < mask.length && mask[c] === 1;
    if (visible && start < 0) start = c;
    else if (!visible && start >= 0) {
      runs.push([start, c]);
      start = -1;
    }
  }
  return runs;
}

function isPromiseLike<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as PromiseLike<T>).then === "function";
}
