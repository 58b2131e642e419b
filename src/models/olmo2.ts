/**
 * OLMo 2 (Team OLMo 2024, "2 OLMo 2 Furious"), following HF transformers' modeling_olmo2.py: the Llama
 * block with its norms moved AFTER attention and the MLP (x + norm(attn(x)), x + norm(mlp(x))), and an
 * RMSNorm over the whole q and k projections (all heads together, before splitting) ahead of rotary.
 */
import { z } from "zod";
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import type { ModelConfig } from "./config.js";
import { activationName, commonConfig, commonFields, decoderFields, decoderShape, eps, refuseQuantization, validateConfig } from "./config-fields.js";
import { parseRope, ropeFields, rotaryInverseFrequencies } from "./rope.js";
import type { CausalLM, KV, Weights } from "./causal-lm.js";
import { type Linear, type Rotary, attendHeads, gatedMlp, linearSpec, rmsNorm, ROTARY_BUFFERS, llamaLayoutDecoder } from "./blocks.js";
import { type TensorSpec, registerArchitecture } from "./registry.js";

/** Olmo2Config's fields, with its defaults. */
const olmo2Schema = z.looseObject({
  ...commonFields,
  ...ropeFields,
  ...decoderFields,
  rms_norm_eps: eps.default(1e-5),
  hidden_act: activationName.default("silu"),
  attention_bias: z.boolean().default(false),
});

export interface Olmo2Fields {
  /** Biases on q, k, v and o (attention_bias). */
  attentionBias: boolean;
}
export type Olmo2Config = ModelConfig<Olmo2Fields>;

function parseOlmo2Config(raw: Record<string, unknown>, modelType: string, file: string): Olmo2Config {
  refuseQuantization(raw, file);
  const c = validateConfig(olmo2Schema, raw, file);
  return {
    modelType,
    ...decoderShape(c, file),
    vocabSize: c.vocab_size,
    normEps: c.rms_norm_eps,
    activation: c.hidden_act,
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
    rope: parseRope(c, file),
    ...commonConfig(c),
    family: { attentionBias: c.attention_bias },
    raw,
  };
}

function olmo2TensorSpec(c: Olmo2Config): TensorSpec[] {
  const { hiddenSize: d, headDim: hd, intermediateSize: inner } = c;
  const bias = c.family.attentionBias;
  const specs: TensorSpec[] = [{ name: "model.embed_tokens.weight", shape: [c.vocabSize, d] }];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    specs.push(
      ...linearSpec(`${p}.self_attn.q_proj`, c.numHeads * hd, d, bias),
      ...linearSpec(`${p}.self_attn.k_proj`, c.numKvHeads * hd, d, bias),
      ...linearSpec(`${p}.self_attn.v_proj`, c.numKvHeads * hd, d, bias),
      ...linearSpec(`${p}.self_attn.o_proj`, d, c.numHeads * hd, bias),
      { name: `${p}.self_attn.q_norm.weight`, shape: [c.numHeads * hd] },
      { name: `${p}.self_attn.k_norm.weight`, shape: [c.numKvHeads * hd] },
      { name: `${p}.post_attention_layernorm.weight`, shape: [d] },
      ...linearSpec(`${p}.mlp.gate_proj`, inner, d, false),
      ...linearSpec(`${p}.mlp.up_proj`, inner, d, false),
      ...linearSpec(`${p}.mlp.down_proj`, d, inner, false),
      { name: `${p}.post_feedforward_layernorm.weight`, shape: [d] },
    );
  }
  specs.push({ name: "model.norm.weight", shape: [d] });
  if (!c.tieWordEmbeddings) specs.push({ name: "lm_head.weight", shape: [c.vocabSize, d] });
  return specs;
}

export function olmo2(config: Olmo2Config, weights: Weights): CausalLM {
  const { numHeads: heads, numKvHeads: kvHeads, headDim: hd, normEps: eps } = config;
  const bias = config.family.attentionBias;
  const invFreq = rotaryInverseFrequencies(config.rope!, hd);

  function block(i: number, x: Value, linear: Linear, rope: Rotary, mask: nn.AttentionMask, past: KV | undefined) {
    const p = `model.layers.${i}`;
    const a = `${p}.self_attn`;
    // q and k normed over the whole projection [B, T, H·hd] ("unlike Qwen3", not per head), then split.
    const q = rmsNorm(weights, `${a}.q_norm`, linear(`${a}.q_proj`, x, bias), eps);
    const k = rmsNorm(weights, `${a}.k_norm`, linear(`${a}.k_proj`, x, bias), eps);
    const { out, kv } = attendHeads(q, k, linear(`${a}.v_proj`, x, bias), past, { heads, kvHeads, headDim: hd, scale: 1 / Math.sqrt(hd), mask, rope });
    // Norms after each sublayer, on its output, before the residual sum.
    x = o.add(x, rmsNorm(weights, `${p}.post_attention_layernorm`, linear(`${a}.o_proj`, out, bias), eps));
    x = o.add(x, rmsNorm(weights, `${p}.post_feedforward_layernorm`, gatedMlp(linear, `${p}.mlp`, x, config.activation, false), eps));
    return { x, kv };
  }

  return llamaLayoutDecoder(config, weights, (positions) => nn.rotaryTables(positions, invFreq), block);
}

registerArchitecture<Olmo2Fields>({
  modelTypes: ["olmo2"],
  positions: "rotary",
  ignoredTensors: [ROTARY_BUFFERS],
  parseConfig: parseOlmo2Config,
  tensorSpec: olmo2TensorSpec,
  build: olmo2,
});
