/**
 * The pieces architecture files are assembled from, written once: projections by module name (each
 * passed through the forward's `linear` hook), norms, the gated MLP, splitting and merging heads,
 * joining a layer's past keys/values, and the block runner. Pieces without weight names (the
 * activation table, rotary embeddings, grouped-query attention) are in graph/nn.ts.
 */
import type { Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import type { ForwardHooks, ForwardResult, KV, Weights } from "./causal-lm.js";

/** How a family stores projection weights: GPT-2's Conv1D [in, out], or nn.Linear's [out, in]. */
export type WeightLayout = "in_out" | "out_in";

/** A projection by module name: `${module}.weight` (and `${module}.bias` when `bias`), hooks applied. */
export type Linear = (module: string, x: Value, bias: boolean) => Value;

/**
 * The projections of one forward call. Every projection of every family goes through here, so an
 * adapter's `linear` hook sees each one, named as the checkpoint names its weight (less `.weight`).
 */
export function hookedLinear(weights: Weights, layout: WeightLayout, hooks: ForwardHooks | undefined): Linear {
  const hook = hooks?.linear;
  return (module, x, bias) => {
    const y = nn.linear(x, weights.get(`${module}.weight`), bias ? weights.get(`${module}.bias`) : undefined, layout);
    return hook === undefined ? y : hook(module, x, y);
  };
}

/** LayerNorm with `${module}.weight` and `${module}.bias` (GPT-2). */
export function layerNorm(weights: Weights, module: string, x: Value, eps: number): Value {
  return o.layerNorm(x, weights.get(`${module}.weight`), weights.get(`${module}.bias`), eps);
}

/** RMSNorm with `${module}.weight` (Llama and most later families). */
export function rmsNorm(weights: Weights, module: string, x: Value, eps: number): Value {
  return o.rmsNorm(x, weights.get(`${module}.weight`), eps);
}

/** Gated MLP (SwiGLU, Shazeer 2020): down_proj(act(gate_proj(x)) ⊙ up_proj(x)) under `module`. */
export function gatedMlp(linear: Linear, module: string, x: Value, activation: nn.Activation, bias: boolean): Value {
  const gate = nn.ACTIVATIONS[activation](linear(`${module}.gate_proj`, x, bias));
  return linear(`${module}.down_proj`, o.mul(gate, linear(`${module}.up_proj`, x, bias)), bias);
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
