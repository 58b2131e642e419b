/**
 * What every architecture provides: graph builders over frozen weights that enter every graph as
 * named inputs (one copy in memory, fed to every program), taking input *embeddings* so soft prompts
 * can be placed before the token embeddings.
 */
import { fail } from "../util/errors.js";
import { type Value, formatShape } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import type { Tensor } from "../runtime/session.js";
import type { ModelConfig } from "./config.js";

/** Keys and values of one layer: [B, kvHeads, S, headDim]. */
export interface KV {
  key: Value;
  value: Value;
}

export interface ForwardArgs {
  /** [B, T, hidden]: token embeddings, with any soft prompt already in place. */
  inputsEmbeds: Value;
  /** [B, T] int64 position of each token. */
  positions: Value;
  /** [B, 1, T, S] bool: may query t attend to key s (S = past length + T): causal and padding. */
  allowed: Value;
  /** Per layer, keys and values that come before this call's tokens (a KV cache, or a prefix). */
  past?: KV[];
}

export interface ForwardResult {
  /** [B, T, hidden] after the final norm. */
  hidden: Value;
  /** HF's hidden_states: the embeddings, the output of each block but the last, then `hidden`. */
  hiddenStates: Value[];
  /** Per layer, past and new keys/values together (the next call's `past`). */
  presents: KV[];
}

export interface CausalLM {
  readonly config: ModelConfig;
  readonly weights: Weights;
  /** The name of the token-embedding table [vocab, hidden] (for prompt initialisation and inspection). */
  readonly embeddingName: string;
  /** Token ids [B, T] (int64) → embeddings [B, T, hidden]. */
  embed(ids: Value): Value;
  forward(args: ForwardArgs): ForwardResult;
  /** Hidden states [N, hidden] → logits [N, vocab]. */
  lmHead(hidden: Value): Value;
}

export interface WeightTensor {
  data: Float32Array;
  shape: number[];
}

/** The frozen weights by name, each a graph input that is fed from the one host copy. */
export class Weights {
  private readonly inputs = new Map<string, Value>();
  private allFeeds?: Record<string, Tensor>;

  constructor(private readonly tensors: Map<string, WeightTensor>) {}

  /** The graph input for a weight; the same value in every graph built over these weights. */
  get(name: string): Value {
    let v = this.inputs.get(name);
    if (v === undefined) {
      const t = this.tensors.get(name);
      if (t === undefined) fail("weights", `the model has no weight "${name}"`, { tensor: name });
      v = o.input(name, "float32", t.shape);
      this.inputs.set(name, v);
    }
    return v;
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  tensor(name: string): WeightTensor {
    const t = this.tensors.get(name);
    if (t === undefined) fail("weights", `the model has no weight "${name}"`, { tensor: name });
    return t;
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  /** Every weight as a feed over its host array (never copied), for any program; extra feeds are ignored. */
  feeds(): Record<string, Tensor> {
    if (this.allFeeds === undefined) {
      this.allFeeds = {};
      for (const [name, t] of this.tensors) this.allFeeds[name] = { data: t.data, dims: t.shape };
    }
    return this.allFeeds;
  }

  /** Check a weight has the shape the architecture needs. */
  expectShape(name: string, shape: number[]): void {
    const t = this.tensor(name);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      fail("weights", `expected shape ${formatShape(shape)}, got ${formatShape(t.shape)}`, { tensor: name });
    }
  }
}

/** [B, T, H·hd] → [B, H, T, hd] */
export function splitHeads(x: Value, heads: number, headDim: number): Value {
  return o.transpose(o.reshape(x, [0, 0, heads, headDim]), [0, 2, 1, 3]);
}

/** [B, H, T, hd] → [B, T, H·hd] */
export function mergeHeads(x: Value, heads: number, headDim: number): Value {
  return o.reshape(o.transpose(x, [0, 2, 1, 3]), [0, 0, heads * headDim]);
}

/** Append this call's keys/values to the layer's past, if any, along the sequence axis. */
export function withPast(past: KV | undefined, key: Value, value: Value): KV {
  return past === undefined ? { key, value } : { key: o.concat([past.key, key], 2), value: o.concat([past.value, value], 2) };
}

/**
 * Run the blocks in order over the embeddings, collecting HF's hidden_states (the embeddings, each
 * block's output but the last, then the final norm's output) and each layer's keys/values.
 */
export function runBlocks(
  embeddings: Value,
  numLayers: number,
  past: KV[] | undefined,
  block: (layer: number, x: Value, past: KV | undefined) => { x: Value; kv: KV },
  finalNorm: (x: Value) => Value,
): ForwardResult {
  let x = embeddings;
  const hiddenStates = [x];
  const presents: KV[] = [];
  for (let i = 0; i < numLayers; i++) {
    const out = block(i, x, past?.[i]);
    x = out.x;
    presents.push(out.kv);
    if (i < numLayers - 1) hiddenStates.push(x);
  }
  const hidden = finalNorm(x);
  hiddenStates.push(hidden);
  return { hidden, hiddenStates, presents };
}
