/**
 * Qwen3 (Qwen Team 2025, "Qwen3 Technical Report"), following HF transformers' modeling_qwen3.py: the
 * Llama block (RMSNorm pre-norm, rotary, grouped-query attention, SwiGLU) with an RMSNorm on each head
 * of q and k (`q_norm`, `k_norm`, over head_dim) before rotary, no q/k/v biases by default, and a
 * head_dim of its own (128 unless the config says otherwise) that need not be hidden / heads. Optional
 * sliding-window layers (use_sliding_window: layers from max_window_layers on, or as layer_types says).
 */
import { z } from "zod";
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import type { ModelConfig } from "./config.js";
import {
  type LayerType,
  activationName,
  commonConfig,
  commonFields,
  decoderFields,
  decoderShape,
  eps,
  layerTypes,
  layerTypesField,
  refuseQuantization,
  validateConfig,
  count,
} from "./config-fields.js";
import { parseRope, ropeFields, rotaryInverseFrequencies } from "./rope.js";
import type { CausalLM, KV, Weights } from "./causal-lm.js";
import { type Linear, type Rotary, attendHeads, gatedMlp, linearSpec, rmsNorm, ROTARY_BUFFERS, llamaLayoutDecoder } from "./blocks.js";
import { type TensorSpec, registerArchitecture } from "./registry.js";

/** Qwen3Config's fields, with its defaults. */
const qwen3Schema = z.looseObject({
  ...commonFields,
  ...ropeFields,
  ...decoderFields,
  rms_norm_eps: eps.default(1e-6),
  hidden_act: activationName.default("silu"),
  attention_bias: z.boolean().default(false),
  use_sliding_window: z.boolean().default(false),
  sliding_window: count.nullish(),
  max_window_layers: z.number().int().nonnegative().default(28),
  layer_types: layerTypesField,
});

export interface Qwen3Fields {
  /** Biases on q, k, v and o (attention_bias). */
  attentionBias: boolean;
  /** Per layer, the window its attention is limited to, or null for full attention. */
  windows: (number | null)[];
}
export type Qwen3Config = ModelConfig<Qwen3Fields>;

function parseQwen3Config(raw: Record<string, unknown>, modelType: string, file: string): Qwen3Config {
  refuseQuantization(raw, file);
  const c = validateConfig(qwen3Schema, raw, file);
  const shape = decoderShape(c, file, 128);
  // As Qwen3Config: the window only exists with use_sliding_window; then layers from max_window_layers slide.
  const window = c.use_sliding_window ? (c.sliding_window ?? 4096) : null;
  const types = layerTypes(c.layer_types, shape.numLayers, (i): LayerType => (window !== null && i >= c.max_window_layers ? "sliding_attention" : "full_attention"), file);
  return {
    modelType,
    ...shape,
    vocabSize: c.vocab_size,
    normEps: c.rms_norm_eps,
    activation: c.hidden_act,
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
    rope: parseRope(c, file),
    ...commonConfig(c),
    family: { attentionBias: c.attention_bias, windows: types.map((t) => (t === "sliding_attention" ? window : null)) },
    raw,
  };
}

function qwen3TensorSpec(c: Qwen3Config): TensorSpec[] {
  const { hiddenSize: d, headDim: hd, intermediateSize: inner } = c;
  const bias = c.family.attentionBias;
  const specs: TensorSpec[] = [{ name: "model.embed_tokens.weight", shape: [c.vocabSize, d] }];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, shape: [d] },
      ...linearSpec(`${p}.self_attn.q_proj`, c.numHeads * hd, d, bias),
      ...linearSpec(`${p}.self_attn.k_proj`, c.numKvHeads * hd, d, bias),
      ...linearSpec(`${p}.self_attn.v_proj`, c.numKvHeads * hd, d, bias),
      ...linearSpec(`${p}.self_attn.o_proj`, d, c.numHeads * hd, bias),
      { name: `${p}.self_attn.q_norm.weight`, shape: [hd] },
      { name: `${p}.self_attn.k_norm.weight`, shape: [hd] },
      { name: `${p}.post_attention_layernorm.weight`, shape: [d] },
      ...linearSpec(`${p}.mlp.gate_proj`, inner, d, false),
      ...linearSpec(`${p}.mlp.up_proj`, inner, d, false),
      ...linearSpec(`${p}.mlp.down_proj`, d, inner, false),
    );
  }
  specs.push({ name: "model.norm.weight", shape: [d] });
  if (!c.tieWordEmbeddings) specs.push({ name: "lm_head.weight", shape: [c.vocabSize, d] });
  return specs;
}

export function qwen3(config: Qwen3Config, weights: Weights): CausalLM {
  const { numHeads: heads, numKvHeads: kvHeads, headDim: hd, normEps: eps } = config;
  const { attentionBias: bias, windows } = config.family;
  const invFreq = rotaryInverseFrequencies(config.rope!, hd);

  function block(i: number, x: Value, linear: Linear, rope: Rotary, mask: nn.AttentionMask, past: KV | undefined) {
    const p = `model.layers.${i}`;
    const a = `${p}.self_attn`;
    const h = rmsNorm(weights, `${p}.input_layernorm`, x, eps);
    const window = windows[i];
    const { out, kv } = attendHeads(linear(`${a}.q_proj`, h, bias), linear(`${a}.k_proj`, h, bias), linear(`${a}.v_proj`, h, bias), past, {
      heads,
      kvHeads,
      headDim: hd,
      scale: 1 / Math.sqrt(hd),
      mask: window === null ? mask : mask.window(window),
      rope,
      // "unlike olmo, only on the head dim": each head of q and k normalised on its own, [B, H, T, hd].
      qNorm: (q) => rmsNorm(weights, `${a}.q_norm`, q, eps),
      kNorm: (k) => rmsNorm(weights, `${a}.k_norm`, k, eps),
    });
    x = o.add(x, linear(`${a}.o_proj`, out, bias));
    const h2 = rmsNorm(weights, `${p}.post_attention_layernorm`, x, eps);
    x = o.add(x, gatedMlp(linear, `${p}.mlp`, h2, config.activation, false));
    return { x, kv };
  }

  return llamaLayoutDecoder(config, weights, (positions) => nn.rotaryTables(positions, invFreq), block);
}

registerArchitecture<Qwen3Fields>({
  modelTypes: ["qwen3"],
  positions: "rotary",
  ignoredTensors: [ROTARY_BUFFERS],
  parseConfig: parseQwen3Config,
  tensorSpec: qwen3TensorSpec,
  build: qwen3,
});
