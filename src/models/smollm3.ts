/**
 * SmolLM3 (Hugging Face 2025, "SmolLM3: smol, multilingual, long-context reasoner"), following HF
 * transformers' modeling_smollm3.py: the Llama block, with rotary left out of some layers (NoPE:
 * `no_rope_layers[i]` is 0, by default every 4th layer) and, with use_sliding_window, a sliding window
 * on the layers layer_types marks (by default the NoPE ones).
 */
import { z } from "zod";
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import { fail } from "../util/errors.js";
import type { ModelConfig } from "./config.js";
import {
  type LayerType,
  activationName,
  commonConfig,
  commonFields,
  count,
  decoderFields,
  decoderShape,
  eps,
  layerTypes,
  layerTypesField,
  refuseQuantization,
  validateConfig,
} from "./config-fields.js";
import { parseRope, ropeFields, rotaryInverseFrequencies } from "./rope.js";
import type { CausalLM, KV, Weights } from "./causal-lm.js";
import { type Linear, type Rotary, attendHeads, gatedMlp, linearSpec, rmsNorm, ROTARY_BUFFERS, llamaLayoutDecoder } from "./blocks.js";
import { type TensorSpec, registerArchitecture } from "./registry.js";

/** SmolLM3Config's fields, with its defaults. */
const smollm3Schema = z.looseObject({
  ...commonFields,
  ...ropeFields,
  ...decoderFields,
  rms_norm_eps: eps.default(1e-6),
  hidden_act: activationName.default("silu"),
  attention_bias: z.boolean().default(false),
  mlp_bias: z.boolean().default(false),
  use_sliding_window: z.boolean().default(false),
  sliding_window: count.nullish(),
  no_rope_layers: z.array(z.number().int().min(0).max(1)).nullish(),
  no_rope_layer_interval: count.default(4),
  layer_types: layerTypesField,
});

export interface SmolLM3Fields {
  attentionBias: boolean;
  mlpBias: boolean;
  /** Per layer: does it apply rotary (no_rope_layers[i] = 1)? */
  useRope: boolean[];
  /** Per layer, the window its attention is limited to, or null. */
  windows: (number | null)[];
}
export type SmolLM3Config = ModelConfig<SmolLM3Fields>;

function parseSmolLM3Config(raw: Record<string, unknown>, modelType: string, file: string): SmolLM3Config {
  refuseQuantization(raw, file);
  const c = validateConfig(smollm3Schema, raw, file);
  const shape = decoderShape(c, file);
  const L = shape.numLayers;
  const useRope = (c.no_rope_layers ?? Array.from({ length: L }, (_, i) => ((i + 1) % c.no_rope_layer_interval !== 0 ? 1 : 0))).map((v) => v === 1);
  if (useRope.length !== L) fail("config", `no_rope_layers has ${useRope.length} entries for ${L} layers`, { file, field: "no_rope_layers" });
  const window = c.use_sliding_window ? (c.sliding_window ?? null) : null;
  const types = layerTypes(c.layer_types, L, (i): LayerType => (window !== null && !useRope[i] ? "sliding_attention" : "full_attention"), file);
  return {
    modelType,
    ...shape,
    vocabSize: c.vocab_size,
    normEps: c.rms_norm_eps,
    activation: c.hidden_act,
    tieWordEmbeddings: c.tie_word_embeddings ?? true,
    rope: parseRope(c, file),
    ...commonConfig(c),
    family: {
      attentionBias: c.attention_bias,
      mlpBias: c.mlp_bias,
      useRope,
      windows: types.map((t) => (t === "sliding_attention" ? window : null)),
    },
    raw,
  };
}

function smollm3TensorSpec(c: SmolLM3Config): TensorSpec[] {
  const { hiddenSize: d, headDim: hd, intermediateSize: inner } = c;
  const { attentionBias: bias, mlpBias } = c.family;
  const specs: TensorSpec[] = [{ name: "model.embed_tokens.weight", shape: [c.vocabSize, d] }];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, shape: [d] },
      ...linearSpec(`${p}.self_attn.q_proj`, c.numHeads * hd, d, bias),
      ...linearSpec(`${p}.self_attn.k_proj`, c.numKvHeads * hd, d, bias),
      ...linearSpec(`${p}.self_attn.v_proj`, c.numKvHeads * hd, d, bias),
      ...linearSpec(`${p}.self_attn.o_proj`, d, c.numHeads * hd, bias),
      { name: `${p}.post_attention_layernorm.weight`, shape: [d] },
      ...linearSpec(`${p}.mlp.gate_proj`, inner, d, mlpBias),
      ...linearSpec(`${p}.mlp.up_proj`, inner, d, mlpBias),
      ...linearSpec(`${p}.mlp.down_proj`, d, inner, mlpBias),
    );
  }
  specs.push({ name: "model.norm.weight", shape: [d] });
  if (!c.tieWordEmbeddings) specs.push({ name: "lm_head.weight", shape: [c.vocabSize, d] });
  return specs;
}

export function smollm3(config: SmolLM3Config, weights: Weights): CausalLM {
  const { numHeads: heads, numKvHeads: kvHeads, headDim: hd, normEps: eps } = config;
  const { attentionBias: bias, mlpBias, useRope, windows } = config.family;
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
      ...(useRope[i] ? { rope } : {}), // a NoPE layer: q and k carry no positions
    });
    x = o.add(x, linear(`${a}.o_proj`, out, bias));
    x = o.add(x, gatedMlp(linear, `${p}.mlp`, rmsNorm(weights, `${p}.post_attention_layernorm`, x, eps), config.activation, mlpBias));
    return { x, kv };
  }

  return llamaLayoutDecoder(config, weights, (positions) => nn.rotaryTables(positions, invFreq), block);
}

registerArchitecture<SmolLM3Fields>({
  modelTypes: ["smollm3"],
  positions: "rotary",
  ignoredTensors: [ROTARY_BUFFERS],
  parseConfig: parseSmolLM3Config,
  tensorSpec: smollm3TensorSpec,
  build: smollm3,
});
