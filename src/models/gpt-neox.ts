/**
 * GPT-NeoX (Black et al. 2022, "GPT-NeoX-20B: An Open-Source Autoregressive Language Model") and the
 * Pythia suite (Biderman et al. 2023), following HF transformers' modeling_gpt_neox.py: LayerNorms with
 * biases, one fused query_key_value projection whose output holds q|k|v per head (interleaved by head,
 * not q for all heads then k), rotary on the first rotary_pct of each head, and (use_parallel_residual)
 * attention and MLP both read the block's input: x + attn(ln_1(x)) + mlp(ln_2(x)).
 */
import { z } from "zod";
import { fail } from "../util/errors.js";
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import type { ModelConfig } from "./config.js";
import { activationName, commonConfig, commonFields, count, eps, refuseQuantization, validateConfig } from "./config-fields.js";
import { parsePartialRotary, parseRope, ropeFields, rotaryInverseFrequencies } from "./rope.js";
import type { CausalLM, ForwardArgs, ForwardResult, KV, Weights } from "./causal-lm.js";
import { type Linear, type Rotary, attendHeads, hookedLinear, layerNorm, linearSpec, runBlocks } from "./blocks.js";
import { type TensorSpec, registerArchitecture } from "./registry.js";

/** GPTNeoXConfig's fields; 4.x spells the rotary settings rotary_pct and rotary_emb_base. */
const neoxSchema = z.looseObject({
  ...commonFields,
  ...ropeFields,
  hidden_size: count,
  num_hidden_layers: count,
  num_attention_heads: count,
  intermediate_size: count,
  max_position_embeddings: count,
  layer_norm_eps: eps.default(1e-5),
  hidden_act: activationName.default("gelu"),
  use_parallel_residual: z.boolean().default(true),
  attention_bias: z.boolean().default(true),
  rotary_pct: z.number().positive().max(1).nullish(),
  rotary_emb_base: z.number().positive().nullish(),
});

export interface GptNeoxFields {
  parallelResidual: boolean;
  attentionBias: boolean;
  /** Dims of each head that rotate: int(head_dim · partial_rotary_factor). */
  rotaryDim: number;
}
export type GptNeoxConfig = ModelConfig<GptNeoxFields>;

function parseNeoxConfig(raw: Record<string, unknown>, modelType: string, file: string): GptNeoxConfig {
  refuseQuantization(raw, file);
  const c = validateConfig(neoxSchema, raw, file);
  if (c.hidden_size % c.num_attention_heads !== 0) {
    fail("config", `hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`, { file, field: "num_attention_heads" });
  }
  const headDim = c.hidden_size / c.num_attention_heads;
  const rotaryDim = Math.floor(headDim * parsePartialRotary(c, c.rotary_pct, 0.25));
  if (rotaryDim % 2 !== 0) fail("config", `the rotary part of each head (${rotaryDim} dims) must be even`, { file, field: "rotary_pct" });
  return {
    modelType,
    hiddenSize: c.hidden_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_attention_heads,
    headDim,
    intermediateSize: c.intermediate_size,
    vocabSize: c.vocab_size,
    maxPositions: c.max_position_embeddings,
    normEps: c.layer_norm_eps,
    activation: c.hidden_act,
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
    rope: parseRope(c, file, c.rotary_emb_base ?? 10000),
    ...commonConfig(c),
    family: { parallelResidual: c.use_parallel_residual, attentionBias: c.attention_bias, rotaryDim },
    raw,
  };
}

function neoxTensorSpec(c: GptNeoxConfig): TensorSpec[] {
  const { hiddenSize: d, intermediateSize: inner } = c;
  const bias = c.family.attentionBias;
  const norm = (name: string): TensorSpec[] => [
    { name: `${name}.weight`, shape: [d] },
    { name: `${name}.bias`, shape: [d] },
  ];
  const specs: TensorSpec[] = [{ name: "gpt_neox.embed_in.weight", shape: [c.vocabSize, d] }];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `gpt_neox.layers.${i}`;
    specs.push(
      ...norm(`${p}.input_layernorm`),
      ...norm(`${p}.post_attention_layernorm`),
      ...linearSpec(`${p}.attention.query_key_value`, 3 * d, d, bias),
      ...linearSpec(`${p}.attention.dense`, d, d, bias),
      ...linearSpec(`${p}.mlp.dense_h_to_4h`, inner, d, true),
      ...linearSpec(`${p}.mlp.dense_4h_to_h`, d, inner, true),
    );
  }
  specs.push(...norm("gpt_neox.final_layer_norm"));
  if (!c.tieWordEmbeddings) specs.push({ name: "embed_out.weight", shape: [c.vocabSize, d] });
  return specs;
}

export function gptNeox(config: GptNeoxConfig, weights: Weights): CausalLM {
  const { numHeads: heads, headDim: hd, normEps: eps } = config;
  const { parallelResidual, attentionBias: bias, rotaryDim } = config.family;
  const invFreq = rotaryInverseFrequencies(config.rope!, rotaryDim);
  const activation = nn.ACTIVATIONS[config.activation];

  function block(i: number, x: Value, linear: Linear, rope: Rotary, mask: nn.AttentionMask, past: KV | undefined) {
    const p = `gpt_neox.layers.${i}`;
    // Fused projection [B, T, 3d], laid out per head as [H, 3, hd]: take q, k, v of every head, each [B, T, H·hd].
    const qkv = o.reshape(linear(`${p}.attention.query_key_value`, layerNorm(weights, `${p}.input_layernorm`, x, eps), bias), [0, 0, heads, 3 * hd]);
    const part = (j: number) => o.reshape(o.slice(qkv, -1, j * hd, (j + 1) * hd), [0, 0, heads * hd]);
    const { out, kv } = attendHeads(part(0), part(1), part(2), past, { heads, kvHeads: heads, headDim: hd, scale: 1 / Math.sqrt(hd), mask, rope });
    const attn = linear(`${p}.attention.dense`, out, bias);
    const mlp = (h: Value) => linear(`${p}.mlp.dense_4h_to_h`, activation(linear(`${p}.mlp.dense_h_to_4h`, layerNorm(weights, `${p}.post_attention_layernorm`, h, eps), true)), true);
    // Parallel: both branches read x. Sequential: the MLP reads x + attn.
    if (parallelResidual) return { x: o.add(o.add(mlp(x), attn), x), kv };
    const h = o.add(attn, x);
    return { x: o.add(mlp(h), h), kv };
  }

  const headWeight = config.tieWordEmbeddings ? "gpt_neox.embed_in.weight" : "embed_out.weight";
  return {
    config,
    weights,
    embeddingName: "gpt_neox.embed_in.weight",
    embed: (ids) => o.gather(weights.get("gpt_neox.embed_in.weight"), ids, 0),
    forward({ inputsEmbeds, positions, allowed, past, hooks }: ForwardArgs): ForwardResult {
      const rope = nn.rotaryTables(positions, invFreq); // [B, 1, T, rotaryDim]: only that much of each head turns
      const mask = new nn.AttentionMask(allowed, positions, past !== undefined);
      const linear = hookedLinear(weights, "out_in", hooks);
      return runBlocks(inputsEmbeds, config.numLayers, past, (i, h, kv) => block(i, h, linear, rope, mask, kv), (h) =>
        layerNorm(weights, "gpt_neox.final_layer_norm", h, eps),
      );
    },
    lmHead: (h, rows) => nn.outputLogits(h, weights.get(headWeight), rows),
  };
}

registerArchitecture<GptNeoxFields>({
  modelTypes: ["gpt_neox"],
  positions: "rotary",
  // Causal-mask and rotary buffers older checkpoints saved.
  ignoredTensors: [/^gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$/, /^gpt_neox\.rotary_emb\.inv_freq$/],
  parseConfig: parseNeoxConfig,
  tensorSpec: neoxTensorSpec,
  build: gptNeox,
});
