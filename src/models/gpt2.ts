/**
 * GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"), following
 * HF transformers' modeling_gpt2.py: pre-norm blocks, learned absolute positions, Conv1D weights
 * stored [in, out] and held [out, in] (transposed once at load, so products use them as nn.Linear's),
 * LM head tied to the token embeddings (wte, used as [V, d]).
 */
import { z } from "zod";
import { fail } from "../util/errors.js";
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import type { ModelConfig } from "./config.js";
import { activationName, commonConfig, commonFields, count, eps, validateConfig } from "./config-fields.js";
import type { CausalLM, ForwardArgs, ForwardResult, KV, Weights } from "./causal-lm.js";
import { type Linear, attendPast, hookedLinear, layerNorm, mergeHeads, runBlocks, splitHeads } from "./blocks.js";
import { type TensorSpec, registerArchitecture } from "./registry.js";

/** GPT2Config's fields, with its defaults for those a checkpoint may leave out. */
const gpt2Schema = z.looseObject({
  ...commonFields,
  n_embd: count,
  n_layer: count,
  n_head: count,
  n_inner: count.nullish(),
  n_positions: count,
  layer_norm_epsilon: eps.default(1e-5),
  activation_function: activationName.default("gelu_new"),
  scale_attn_weights: z.boolean().default(true),
  scale_attn_by_inverse_layer_idx: z.boolean().default(false),
  reorder_and_upcast_attn: z.boolean().default(false),
});

export interface Gpt2Fields {
  /** Divide attention scores by sqrt(headDim) (llama-style models always do). */
  scaleAttnWeights: boolean;
}
export type Gpt2Config = ModelConfig<Gpt2Fields>;

function parseGpt2Config(raw: Record<string, unknown>, modelType: string, file: string): Gpt2Config {
  const c = validateConfig(gpt2Schema, raw, file);
  if (c.scale_attn_by_inverse_layer_idx) {
    fail("config", "scaling attention by the inverse layer index is not supported", {
      file,
      field: "scale_attn_by_inverse_layer_idx",
    });
  }
  if (c.reorder_and_upcast_attn) {
    fail("config", "reordered, upcast attention is not supported", { file, field: "reorder_and_upcast_attn" });
  }
  if (c.n_embd % c.n_head !== 0) {
    fail("config", `n_embd ${c.n_embd} is not divisible by n_head ${c.n_head}`, { file, field: "n_head" });
  }
  return {
    modelType,
    hiddenSize: c.n_embd,
    numLayers: c.n_layer,
    numHeads: c.n_head,
    numKvHeads: c.n_head,
    headDim: c.n_embd / c.n_head,
    intermediateSize: c.n_inner ?? 4 * c.n_embd,
    vocabSize: c.vocab_size,
    maxPositions: c.n_positions,
    normEps: c.layer_norm_epsilon,
    activation: c.activation_function,
    tieWordEmbeddings: c.tie_word_embeddings ?? true,
    rope: null,
    ...commonConfig(c),
    family: { scaleAttnWeights: c.scale_attn_weights },
    raw,
  };
}

/** Canonical names drop the `transformer.` prefix (as the original `gpt2` checkpoint does); Conv1D is stored [in, out], held [out, in]. */
function gpt2TensorSpec(c: Gpt2Config): TensorSpec[] {
  const d = c.hiddenSize;
  const inner = c.intermediateSize;
  const specs: TensorSpec[] = [
    { name: "wte.weight", shape: [c.vocabSize, d] },
    { name: "wpe.weight", shape: [c.maxPositions, d] },
  ];
  for (let i = 0; i < c.numLayers; i++) {
    const h = `h.${i}`;
    specs.push(
      { name: `${h}.ln_1.weight`, shape: [d] },
      { name: `${h}.ln_1.bias`, shape: [d] },
      { name: `${h}.attn.c_attn.weight`, shape: [d, 3 * d], heldTransposed: true }, // q, k, v side by side
      { name: `${h}.attn.c_attn.bias`, shape: [3 * d] },
      { name: `${h}.attn.c_proj.weight`, shape: [d, d], heldTransposed: true },
      { name: `${h}.attn.c_proj.bias`, shape: [d] },
      { name: `${h}.ln_2.weight`, shape: [d] },
      { name: `${h}.ln_2.bias`, shape: [d] },
      { name: `${h}.mlp.c_fc.weight`, shape: [d, inner], heldTransposed: true },
      { name: `${h}.mlp.c_fc.bias`, shape: [inner] },
      { name: `${h}.mlp.c_proj.weight`, shape: [inner, d], heldTransposed: true },
      { name: `${h}.mlp.c_proj.bias`, shape: [d] },
    );
  }
  specs.push({ name: "ln_f.weight", shape: [d] }, { name: "ln_f.bias", shape: [d] });
  if (!c.tieWordEmbeddings) specs.push({ name: "lm_head.weight", shape: [c.vocabSize, d] });
  return specs;
}

export function gpt2(config: Gpt2Config, weights: Weights): CausalLM {
  const d = config.hiddenSize;
  const heads = config.numHeads;
  const hd = config.headDim;
  const eps = config.normEps;
  const w = (name: string) => weights.get(name);
  const activation = nn.ACTIVATIONS[config.activation];
  if (hd * heads !== d) fail("config", `n_embd ${d} is not n_head ${heads} × head size`, { field: "n_embd" });

  function block(i: number, x: Value, linear: Linear, mask: nn.AttentionMask, past: KV | undefined): { x: Value; kv: KV } {
    const p = `h.${i}`;
    // Attention: one Conv1D projects to q|k|v, each [B, T, d]. (Slicing the weight instead measured
    // no faster and held 80 MB more.)
    const h = layerNorm(weights, `${p}.ln_1`, x, eps);
    const qkv = linear(`${p}.attn.c_attn`, h, true); // [B, T, 3d]
    const q = splitHeads(o.slice(qkv, -1, 0, d), heads, hd); // [B, H, T, hd]
    const scale = config.family.scaleAttnWeights ? 1 / Math.sqrt(hd) : 1;
    const { out, kv } = attendPast(q, past, splitHeads(o.slice(qkv, -1, d, 2 * d), heads, hd), splitHeads(o.slice(qkv, -1, 2 * d, 3 * d), heads, hd), mask, scale);
    const attn = mergeHeads(out, heads, hd); // [B, T, d]
    x = o.add(x, linear(`${p}.attn.c_proj`, attn, true));
    // MLP: d → 4d → d.
    const h2 = layerNorm(weights, `${p}.ln_2`, x, eps);
    const up = activation(linear(`${p}.mlp.c_fc`, h2, true));
    x = o.add(x, linear(`${p}.mlp.c_proj`, up, true));
    return { x, kv };
  }

  return {
    config,
    weights,
    embeddingName: "wte.weight",
    embed: (ids) => o.gather(w("wte.weight"), ids, 0),
    forward({ inputsEmbeds, positions, allowed, past, hooks }: ForwardArgs): ForwardResult {
      const x = o.add(inputsEmbeds, o.gather(w("wpe.weight"), positions, 0)); // token + position embeddings
      const mask = new nn.AttentionMask(allowed); // shared by every layer
      const linear = hookedLinear(weights, "out_in", hooks);
      return runBlocks(x, config.numLayers, past, (i, h, kv) => block(i, h, linear, mask, kv), (h) => layerNorm(weights, "ln_f", h, eps));
    },
    // Usually tied: logits = h · wteᵀ, with wte used as stored.
    lmHead: (h, rows) => nn.outputLogits(h, w(config.tieWordEmbeddings ? "wte.weight" : "lm_head.weight"), rows),
  };
}

registerArchitecture<Gpt2Fields>({
  modelTypes: ["gpt2"],
  positions: "learned",
  optionalPrefix: "transformer.",
  // Old causal-mask buffers some checkpoints saved.
  ignoredTensors: [/^h\.\d+\.attn\.(bias|masked_bias)$/],
  parseConfig: parseGpt2Config,
  tensorSpec: gpt2TensorSpec,
  build: gpt2,
});
