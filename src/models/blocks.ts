/**
 * The pieces architecture files are assembled from, written once: projections by module name (each
 * passed through the forward's `linear` hook) and their tensor specs, norms, the gated MLP, splitting
 * and merging heads, attention over projected heads and a layer's past keys/values, and the block
 * runner. Pieces without weight names (the
 * activation table, rotary embeddings, grouped-query attention) are in graph/nn.ts.
 */
import type { Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import { quantizedLinear } from "../quantize/weights.js";
import type { CausalLM, ForwardArgs, ForwardHooks, ForwardResult, KV, Weights } from "./causal-lm.js";
import type { ModelConfig } from "./config.js";
import type { TensorSpec } from "./registry.js";

/** How a family holds projection weights: nn.Linear's [out, in] (every family, GPT-2's Conv1D transposed at load), or [in, out]. */
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
    const b = bias ? weights.get(`${module}.bias`) : undefined;
    // A model loaded with --quantize runs this projection through its block-quantised weight.
    const y = quantizedLinear(weights, module, x, b) ?? nn.linear(x, weights.get(`${module}.weight`), b, layout);
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

/** Gemma's RMSNorm: the weight is stored as an offset from one, x̂·(1 + w). */
export function rmsNormPlusOne(weights: Weights, module: string, x: Value, eps: number): Value {
  return o.rmsNorm(x, o.add(weights.get(`${module}.weight`), 1), eps);
}

/** A projection's tensor spec: nn.Linear [out, in], and its bias when it has one. */
export function linearSpec(module: string, out: number, inp: number, bias: boolean): TensorSpec[] {
  return [{ name: `${module}.weight`, shape: [out, inp] }, ...(bias ? [{ name: `${module}.bias`, shape: [out] }] : [])];
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

/** cos and sin tables [B, 1, T, rd] for one forward (nn.rotaryTables). */
export interface Rotary {
  cos: Value;
  sin: Value;
}

/** How one layer attends, after its projections (Qwen3, Gemma 2/3, OLMo 2, Phi-3, SmolLM3, GPT-NeoX). */
export interface HeadsOptions {
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Multiplies q·k (1/√headDim, or Gemma's 1/√query_pre_attn_scalar). */
  scale: number;
  mask: nn.AttentionMask;
  /** Rotary tables, or none for a layer without positions (SmolLM3's NoPE layers). */
  rope?: Rotary;
  /** Norms of each head of q and of k ([.., headDim]) before rotary (Qwen3, Gemma 3). */
  qNorm?: (q: Value) => Value;
  kNorm?: (k: Value) => Value;
  /** Soft cap of the attention logits (Gemma 2). */
  softcap?: number;
}

/**
 * Multi-head attention over projected q [B, T, H·hd] and k, v [B, T, Hkv·hd]: split into heads,
 * per-head norms and rotary on q and k, the new keys/values joined to the past (cached keys are
 * rotated already), attention, heads merged back → [B, T, H·hd], and this layer's keys/values.
 */
export function attendHeads(q: Value, k: Value, v: Value, past: KV | undefined, opts: HeadsOptions): { out: Value; kv: KV } {
  const { heads, kvHeads, headDim: hd, rope } = opts;
  let qh = splitHeads(q, heads, hd); // [B, H, T, hd]
  let kh = splitHeads(k, kvHeads, hd); // [B, Hkv, T, hd]
  if (opts.qNorm !== undefined) qh = opts.qNorm(qh);
  if (opts.kNorm !== undefined) kh = opts.kNorm(kh);
  if (rope !== undefined) {
    qh = nn.rotary(qh, rope.cos, rope.sin);
    kh = nn.rotary(kh, rope.cos, rope.sin);
  }
  const { out, kv } = attendPast(qh, past, kh, splitHeads(v, kvHeads, hd), opts.mask, opts.scale, opts.softcap); // [B, H, T, hd]
  return { out: mergeHeads(out, heads, hd), kv };
}

/** Append this call's keys/values to the layer's past, if any, along the sequence axis. */
export function withPast(past: KV | undefined, key: Value, value: Value): KV {
  return past === undefined ? { key, value } : { key: o.concat([past.key, key], 2), value: o.concat([past.value, value], 2) };
}

/** Attention of q over the past (if any) and this call's keys/values → its output [B, H, T, hd] and the layer's presents. */
export function attendPast(q: Value, past: KV | undefined, key: Value, value: Value, mask: nn.AttentionMask, scale: number, cap?: number): { out: Value; kv: KV } {
  if (past?.held) return { out: nn.attention(q, key, value, mask, scale, cap, past), kv: { key, value } };
  const kv = withPast(past, key, value);
  return { out: nn.attention(q, kv.key, kv.value, mask, scale, cap), kv };
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

/** Rotary frequencies older checkpoints saved as buffers; every rotary family recomputes them from the config. */
export const ROTARY_BUFFERS = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

/** One decoder layer of the Llama layout, given its hooked projections and the forward's shared rope and mask. */
export type LlamaLayoutBlock = (layer: number, x: Value, linear: Linear, rope: Rotary, mask: nn.AttentionMask, past: KV | undefined) => { x: Value; kv: KV };

/**
 * The shell every family with HF's Llama layout shares (`model.embed_tokens`, `model.layers.N`, `model.norm`, and
 * `lm_head` or the tied embeddings): per forward, the rotary tables and the attention mask are built once and shared
 * by every layer (a sliding layer narrows the mask with `mask.window(size)`, cached), and each block gets the
 * projections with the adapter's hooks. Families differ in their block and their rope tables.
 */
export function llamaLayoutDecoder(
  config: ModelConfig,
  weights: Weights,
  rotaryTables: (positions: Value) => Rotary,
  block: LlamaLayoutBlock,
): CausalLM {
  const headWeight = config.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  return {
    config,
    weights,
    embeddingName: "model.embed_tokens.weight",
    embed: (ids) => o.gather(weights.get("model.embed_tokens.weight"), ids, 0),
    forward({ inputsEmbeds, positions, allowed, past, hooks }: ForwardArgs): ForwardResult {
      const rope = rotaryTables(positions);
      const mask = new nn.AttentionMask(allowed, positions, past !== undefined);
      const linear = hookedLinear(weights, "out_in", hooks);
      return runBlocks(inputsEmbeds, config.numLayers, past, (i, h, kv) => block(i, h, linear, rope, mask, kv), (h) =>
        rmsNorm(weights, "model.norm", h, config.normEps),
      );
    },
    lmHead: (h, rows) => nn.outputLogits(h, weights.get(headWeight), rows),
  };
}
