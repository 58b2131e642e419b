/**
 * Soft prompts at inference, and the cache of their keys and values. Virtual tokens come first,
 * take positions 0..n-1 and attend only to each other, so their keys/values (and the logits after the
 * last of them) depend on the prompt alone: computed once per prompt, they are the cached `past` of
 * every request that uses it, in any batch, in any call. A prefix (prefix tuning, Cartridges) is
 * keys/values already: it is its own state, with no logits after it. A LoRA adapter (lora.ts) puts
 * nothing before the tokens: its state carries the adapter, which the step programs apply to the row.
 */
import { fail } from "../util/errors.js";
import { checkPositions } from "./layout.js";
import type { CausalLM } from "../models/causal-lm.js";
import { arangePositions, attentionPattern } from "../models/inputs.js";
import type { Tensor } from "../runtime/session.js";
import { pastName, promptProgram, presentName } from "./step.js";
import { type LoraPrompt, checkLoraPrompt, isLoraPrompt } from "./lora.js";

export type { LoraPrompt } from "./lora.js";

/** What an adapter puts before a row's tokens: a soft prompt's embeddings, or a prefix of keys/values; or how it changes the row's forward (LoRA). */
export type AdapterPrompt = SoftPrompt | PrefixPrompt | LoraPrompt;

/** A trained soft prompt: `embeddings` is [n, hidden] row-major; `id` names it for the cache. */
export interface SoftPrompt {
  /** Cache key: the same id with different embeddings is recomputed, never served stale. */
  id: string;
  embeddings: Float32Array;
  /** [n, hidden]; when left out, n = embeddings.length / hidden. */
  dims?: readonly number[];
}

/** A trained prefix (prefix tuning, Cartridges): per layer the keys/values of n virtual tokens, used as they are. */
export interface PrefixPrompt {
  /** Names the prefix in errors. */
  id: string;
  numVirtual: number;
  /** Per layer, keys and values each [kvHeads, n, headDim] row-major (keys as attention sees them: not rotated again). */
  layers: readonly HostKV[];
}

/** Keys and values of one layer on the host, each [batch, kvHeads, length, headDim] row-major. */
export interface HostKV {
  key: Float32Array;
  value: Float32Array;
}

/** What a prompt leaves for the tokens after it. */
export interface PromptState {
  numVirtual: number;
  /** Per layer, [1, kvHeads, n, headDim]. */
  layers: HostKV[];
  /** [vocab]: the logits after the last virtual token (they predict the first real token); a prefix has none. */
  lastLogits?: Float32Array;
  /** A LoRA adapter's row (no virtual tokens, no layers): the adapter every forward of the row applies. */
  lora?: LoraPrompt;
}

export function isPrefixPrompt(prompt: AdapterPrompt): prompt is PrefixPrompt {
  return "layers" in prompt;
}

/** Check a soft prompt or prefix against the model; returns its number of virtual tokens. */
export function checkSoftPrompt(lm: CausalLM, prompt: AdapterPrompt, field = "prompt"): number {
  const d = lm.config.hiddenSize;
  if (typeof prompt.id !== "string" || prompt.id.length === 0) fail("usage", "a soft prompt needs a non-empty id (its cache key)", { field });
  if (isPrefixPrompt(prompt)) return checkPrefix(lm, prompt, field);
  if (isLoraPrompt(prompt)) {
    checkLoraPrompt(lm, prompt, field);
    return 0;
  }
  if (!(prompt.embeddings instanceof Float32Array)) fail("usage", "soft prompt embeddings must be a Float32Array [n, hidden]", { field });
  const len = prompt.embeddings.length;
  if (prompt.dims !== undefined) {
    const [n, width] = prompt.dims;
    if (prompt.dims.length !== 2 || width !== d) {
      fail("usage", `soft prompt "${prompt.id}" is [${prompt.dims.join(", ")}], but the model's hidden size is ${d}: expected [n, ${d}]`, { field });
    }
    if (n * width !== len) fail("usage", `soft prompt "${prompt.id}" has ${len} values, not ${n}×${width}`, { field });
  } else if (len % d !== 0) {
    fail("usage", `soft prompt "${prompt.id}" has ${len} values, not a multiple of the model's hidden size ${d}`, { field });
  }
  if (len === 0) fail("usage", `soft prompt "${prompt.id}" has no virtual tokens`, { field });
  checkPositions(lm, len / d - 1, field); // before its keys/values are computed
  for (let i = 0; i < len; i++) {
    if (!Number.isFinite(prompt.embeddings[i])) fail("usage", `soft prompt "${prompt.id}" holds a non-finite value at ${i}`, { field });
  }
  return len / d;
}

/** A prefix needs every layer's keys and values, each [kvHeads, n, headDim], finite. */
function checkPrefix(lm: CausalLM, prefix: PrefixPrompt, field: string): number {
  const { numLayers, numKvHeads, headDim } = lm.config;
  const n = prefix.numVirtual;
  if (!(Number.isInteger(n) && n >= 1)) fail("usage", `prefix "${prefix.id}" needs numVirtual >= 1, got ${n}`, { field: `${field}.numVirtual` });
  const size = numKvHeads * n * headDim;
  const fits = (a: unknown) => a instanceof Float32Array && a.length === size;
  if (!Array.isArray(prefix.layers) || prefix.layers.length !== numLayers || !prefix.layers.every((l) => fits(l.key) && fits(l.value))) {
    fail("usage", `prefix "${prefix.id}" does not fit this model: expected ${numLayers} layers of keys and values [${numKvHeads}, ${n}, ${headDim}] (kvHeads, n, headDim)`, { field: `${field}.layers` });
  }
  prefix.layers.forEach((l, i) => {
    for (const kind of ["key", "value"] as const) {
      if (!l[kind].every(Number.isFinite)) fail("usage", `prefix "${prefix.id}" holds a non-finite value`, { field: `${field}.layers[${i}].${kind}` });
    }
  });
  return n;
}

/** Prompt states of one model, keyed by prompt id, least recently used evicted first (beyond `maxEntries`, or `maxBytes` of keys/values). */
export class PromptCache {
  private readonly entries = new Map<string, { embeddings: Float32Array; state: Promise<PromptState>; bytes: number }>();

  constructor(
    readonly lm: CausalLM,
    readonly maxEntries = 64,
    /** A server's memory bound; a single state larger than it is still kept (the rows using it need it anyway). */
    readonly maxBytes = Infinity,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Bytes held by the computed states. */
  get bytes(): number {
    let total = 0;
    for (const e of this.entries.values()) total += e.bytes;
    return total;
  }

  /** The prompt's keys/values, computed on first use (or when its embeddings changed); a prefix is its own. */
  get(prompt: AdapterPrompt): Promise<PromptState> {
    if (isPrefixPrompt(prompt)) {
      const numVirtual = checkPrefix(this.lm, prompt, "prompt");
      return Promise.resolve({ numVirtual, layers: [...prompt.layers] });
    }
    if (isLoraPrompt(prompt)) {
      checkLoraPrompt(this.lm, prompt);
      return Promise.resolve({ numVirtual: 0, layers: [], lora: prompt });
    }
    const hit = this.entries.get(prompt.id);
    this.entries.delete(prompt.id);
    if (hit !== undefined && sameValues(hit.embeddings, prompt.embeddings)) {
      this.entries.set(prompt.id, hit); // most recently used goes last
      return hit.state;
    }
    const n = checkSoftPrompt(this.lm, prompt);
    const state = computePromptState(this.lm, prompt.embeddings, n);
    const entry = { embeddings: prompt.embeddings.slice(), state, bytes: prompt.embeddings.byteLength };
    this.entries.set(prompt.id, entry);
    state.then(
      (s) => {
        entry.bytes += s.layers.reduce((sum, l) => sum + l.key.byteLength + l.value.byteLength, s.lastLogits?.byteLength ?? 0);
        this.evict(entry);
      },
      () => {
        if (this.entries.get(prompt.id) === entry) this.entries.delete(prompt.id);
      },
    );
    this.evict(entry);
    return state;
  }

  clear(): void {
    this.entries.clear();
  }

  /** Drop least recently used entries (never `keep`) until both bounds hold. */
  private evict(keep: { bytes: number }): void {
    for (const [id, e] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      if (e !== keep) this.entries.delete(id);
    }
  }
}

const defaultCaches = new WeakMap<CausalLM, PromptCache>();

/** The cache `generate` and `scoreCompletions` use for a model unless given another. */
export function promptCacheFor(lm: CausalLM): PromptCache {
  let cache = defaultCaches.get(lm);
  if (cache === undefined) {
    cache = new PromptCache(lm);
    defaultCaches.set(lm, cache);
  }
  return cache;
}

/** Run the virtual tokens alone (positions 0..n-1, causal) and keep their presents and last logits. */
async function computePromptState(lm: CausalLM, embeddings: Float32Array, n: number): Promise<PromptState> {
  const program = await promptProgram(lm);
  const out = await program.run({
    ...lm.weights.feeds(),
    prompt_embeds: { data: embeddings, dims: [1, n, lm.config.hiddenSize] },
    position_ids: arangePositions(1, n),
    allowed: attentionPattern([Array<number>(n).fill(1)], n),
  });
  const layers = Array.from({ length: lm.config.numLayers }, (_, i) => ({
    key: out[presentName(i, "key")].data as Float32Array,
    value: out[presentName(i, "value")].data as Float32Array,
  }));
  return { numVirtual: n, layers, lastLogits: out.logits.data as Float32Array };
}

/**
 * The batch's past: per layer [B, kvHeads, width, headDim] with row b's prompt (if any) in the last
 * n_b columns and zeros before it (masked out by the key mask). Feeds named as the step program wants.
 */
export function batchPast(lm: CausalLM, prompts: readonly (PromptState | undefined)[], width: number): Record<string, Tensor> {
  const { numLayers, numKvHeads: kvHeads, headDim: hd } = lm.config;
  const B = prompts.length;
  const feeds: Record<string, Tensor> = {};
  for (let i = 0; i < numLayers; i++) {
    for (const kind of ["key", "value"] as const) {
      const data = new Float32Array(B * kvHeads * width * hd);
      prompts.forEach((p, b) => {
        if (p === undefined || p.numVirtual === 0) return;
        const n = p.numVirtual;
        const src = p.layers[i][kind];
        for (let h = 0; h < kvHeads; h++) {
          data.set(src.subarray(h * n * hd, (h + 1) * n * hd), ((b * kvHeads + h) * width + width - n) * hd);
        }
      });
      feeds[pastName(i, kind)] = { data, dims: [B, kvHeads, width, hd] };
    }
  }
  return feeds;
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}
