/**
 * Prefix tuning (Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation") as
 * PEFT computes it: n learned keys and values for every layer, placed before the text's as a past.
 * The prefix's keys are used as they are (no rotary embedding is applied to them) and the text takes
 * positions n..n+T-1. Shared with Cartridges, which store the same table.
 *
 * The table is PEFT's `prompt_embeddings`: [n, L·2·kvHeads·headDim], viewed as [n, L·2, kvHeads, headDim];
 * index 2l holds layer l's keys, 2l+1 its values. With `prefix_projection` it is the output of an MLP
 * over an [n, token_dim] embedding: Linear(token_dim, encoder_hidden_size) → Tanh → Linear(…, L·2·token_dim).
 */
import type { Value } from "../../graph/ir.js";
import * as o from "../../graph/ops.js";
import * as nn from "../../graph/nn.js";
import type { CausalLM, KV } from "../../models/causal-lm.js";
import { fail } from "../../util/errors.js";
import { Rng } from "../../util/rng.js";
import type { Adaptation, Param, Params } from "../method.js";

/** Our names of the trainable tensors: PEFT's prompt encoder's (`prompt_encoder.<name>`). */
export const EMBEDDING = "embedding.weight";
export const MLP = { w0: "transform.0.weight", b0: "transform.0.bias", w2: "transform.2.weight", b2: "transform.2.bias" } as const;
/** PEFT's name of the saved table. */
export const PEFT_PREFIX = "prompt_embeddings";

/** The shape of a model's prefix: layers, key/value heads and their width. */
export interface PrefixShape {
  numLayers: number;
  kvHeads: number;
  headDim: number;
  /** kvHeads × headDim: PEFT's token_dim for prefix methods. */
  tokenDim: number;
}

export function prefixShape(lm: CausalLM): PrefixShape {
  const { numLayers, numKvHeads, headDim } = lm.config;
  return { numLayers, kvHeads: numKvHeads, headDim, tokenDim: numKvHeads * headDim };
}

/** Width of one virtual token's row of the table: keys and values of every layer. */
export const tableWidth = (s: Pick<PrefixShape, "numLayers" | "tokenDim">) => s.numLayers * 2 * s.tokenDim;

/** Per layer, keys and values [1, kvHeads, n, headDim] of a table [n, L·2·kvHeads·headDim]. */
export function pastFromTable(table: Value, n: number, s: PrefixShape): KV[] {
  const heads = o.transpose(o.reshape(table, [n, s.numLayers * 2, s.kvHeads, s.headDim]), [1, 2, 0, 3]); // [2L, H, n, hd]
  return Array.from({ length: s.numLayers }, (_, l) => ({
    key: o.slice(heads, 0, 2 * l, 2 * l + 1), // [1, H, n, hd]
    value: o.slice(heads, 0, 2 * l + 1, 2 * l + 2),
  }));
}

/** The MLP of `prefix_projection` over the embedding [n, token_dim] → [n, L·2·token_dim]. */
export function projectPrefix(params: ReadonlyMap<string, Value>): Value {
  const hidden = o.tanh(nn.linear(params.get(EMBEDDING)!, params.get(MLP.w0)!, params.get(MLP.b0)!, "out_in"));
  return nn.linear(hidden, params.get(MLP.w2)!, params.get(MLP.b2)!, "out_in");
}

/** The adaptation of a prefix: the table itself, or the MLP's output when the params hold one. */
export function prefixAdaptation(params: ReadonlyMap<string, Value>, n: number, s: PrefixShape): Adaptation {
  const table = params.has(MLP.w0) ? projectPrefix(params) : params.get(EMBEDDING)!;
  return { past: pastFromTable(table, n, s), feeds: () => ({}) };
}

/** The MLP on the host, for saving and inference (PEFT saves only its output): [n, L·2·token_dim]. */
export function foldProjection(params: Params): Float32Array {
  const [emb, w0, b0, w2, b2] = [EMBEDDING, MLP.w0, MLP.b0, MLP.w2, MLP.b2].map((k) => params.get(k)!);
  const [n, d] = emb.shape;
  const [hiddenSize, outSize] = [w0.shape[0], w2.shape[0]];
  const hidden = new Float64Array(hiddenSize);
  const out = new Float32Array(n * outSize);
  for (let i = 0; i < n; i++) {
    for (let h = 0; h < hiddenSize; h++) {
      let sum = b0.data[h];
      for (let k = 0; k < d; k++) sum += emb.data[i * d + k] * w0.data[h * d + k];
      hidden[h] = Math.tanh(Math.fround(sum));
    }
    for (let j = 0; j < outSize; j++) {
      let sum = b2.data[j];
      for (let h = 0; h < hiddenSize; h++) sum += hidden[h] * w2.data[j * hiddenSize + h];
      out[i * outSize + j] = sum;
    }
  }
  return out;
}

/** Per layer, host keys and values [kvHeads, n, headDim] of a table [n, L·2·kvHeads·headDim]: the past inference feeds. */
export function hostPast(table: Float32Array, n: number, s: PrefixShape): { key: Float32Array; value: Float32Array }[] {
  const { numLayers: L, kvHeads: H, headDim: hd } = s;
  const width = tableWidth(s);
  const slab = (index: number) => {
    const out = new Float32Array(H * n * hd);
    for (let h = 0; h < H; h++) {
      for (let j = 0; j < n; j++) out.set(table.subarray(j * width + (index * H + h) * hd, j * width + (index * H + h + 1) * hd), (h * n + j) * hd);
    }
    return out;
  };
  return Array.from({ length: L }, (_, l) => ({ key: slab(2 * l), value: slab(2 * l + 1) }));
}

/** The inverse of `hostPast`: a table [n, L·2·kvHeads·headDim] from per-layer [1 or none, kvHeads, ≥n, headDim] keys/values (their first n). */
export function tableFromPast(layers: readonly { key: Float32Array; value: Float32Array }[], n: number, length: number, s: PrefixShape): Float32Array {
  const { kvHeads: H, headDim: hd } = s;
  const width = tableWidth(s);
  const table = new Float32Array(n * width);
  layers.forEach((kv, l) => {
    [kv.key, kv.value].forEach((src, kind) => {
      const index = 2 * l + kind;
      for (let h = 0; h < H; h++) {
        for (let j = 0; j < n; j++) table.set(src.subarray((h * length + j) * hd, (h * length + j + 1) * hd), j * width + (index * H + h) * hd);
      }
    });
  });
  return table;
}

/** Values drawn as torch initialises: N(0, 1) for an Embedding, U(±1/√fan_in) for a Linear's weight and bias. */
export function normalInit(rng: Rng, size: number): Float32Array {
  return Float32Array.from({ length: size }, () => rng.normal());
}
export function linearInit(rng: Rng, size: number, fanIn: number): Float32Array {
  const bound = 1 / Math.sqrt(fanIn);
  return Float32Array.from({ length: size }, () => (2 * rng.next() - 1) * bound);
}

/** A saved table must be [num_virtual_tokens, num_layers·2·token_dim]. */
export function checkTable(table: Param, n: number, s: Pick<PrefixShape, "numLayers" | "tokenDim">, where: string): void {
  const want = [n, tableWidth(s)];
  if (table.shape.length !== 2 || table.shape[0] !== want[0] || table.shape[1] !== want[1]) {
    fail("adapter", `shape [${table.shape.join(", ")}] does not match the config's [num_virtual_tokens, num_layers·2·token_dim] = [${want.join(", ")}]`, { file: where, tensor: PEFT_PREFIX });
  }
}

/** A prefix and the longest text after it must fit the model's positions: the prefix alone must leave room for one token. */
export function checkPrefixLength(lm: CausalLM, n: number, flag: string): void {
  const max = lm.config.maxPositions;
  if (n >= max) fail("usage", `${flag} must be ≥ 1 and ≤ ${max - 1}: the prefix takes positions 0..${n - 1}, and the model has ${max} (max_position_embeddings)`, { field: flag });
}
