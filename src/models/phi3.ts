/**
 * Phi-3 (Abdin et al. 2024, "Phi-3 Technical Report") and Phi-4-mini, following HF transformers'
 * modeling_phi3.py: the Llama block with q|k|v fused in one qkv_proj (all q heads, then k, then v) and
 * gate|up fused in one gate_up_proj, rotary on the first partial_rotary_factor of each head, and a
 * sliding window on every layer when the config sets one, and LongRoPE (rope_type "longrope", or "su"
 * and "yarn" as older Phi-3 configs name it, which Phi3Config reads as longrope). Each forward picks the
 * short or long factors from its largest position, as transformers' rotary does; unlike
 * Phi3ForCausalLM.generate, the KV cache is not recomputed when a sequence first passes
 * original_max_position_embeddings, so keys cached before that keep the short factors.
 */
import { z } from "zod";
import { fail } from "../util/errors.js";
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import type { ModelConfig } from "./config.js";
import { activationName, commonConfig, commonFields, count, decoderFields, decoderShape, eps, refuseQuantization, validateConfig } from "./config-fields.js";
import { type RopeBlock, parsePartialRotary, parseRope, ropeFields, rotaryInverseFrequencies, rotaryOptions } from "./rope.js";
import type { CausalLM, KV, Weights } from "./causal-lm.js";
import { type Linear, type Rotary, attendHeads, linearSpec, rmsNorm, ROTARY_BUFFERS, llamaLayoutDecoder } from "./blocks.js";
import { type TensorSpec, registerArchitecture } from "./registry.js";

/** Phi3Config's fields, with its defaults; 4.x has partial_rotary_factor at the top. */
const phi3Schema = z.looseObject({
  ...commonFields,
  ...ropeFields,
  ...decoderFields,
  rms_norm_eps: eps.default(1e-5),
  hidden_act: activationName.default("silu"),
  partial_rotary_factor: z.number().positive().max(1).nullish(),
  original_max_position_embeddings: count.nullish(),
  sliding_window: count.nullish(),
});

export interface Phi3Fields {
  /** Dims of each head that rotate: int(head_dim · partial_rotary_factor). */
  rotaryDim: number;
  /** The window every layer's attention is limited to, or null. */
  slidingWindow: number | null;
}
export type Phi3Config = ModelConfig<Phi3Fields>;

function parsePhi3Config(raw: Record<string, unknown>, modelType: string, file: string): Phi3Config {
  refuseQuantization(raw, file);
  const c = validateConfig(phi3Schema, raw, file);
  const shape = decoderShape(c, file);
  const rotaryDim = Math.floor(shape.headDim * parsePartialRotary(c, c.partial_rotary_factor));
  if (rotaryDim % 2 !== 0) fail("config", `the rotary part of each head (${rotaryDim} dims) must be even`, { file, field: "partial_rotary_factor" });
  const rope = parseRope(longRopeNamed(c), file, 10000, { maxPositions: shape.maxPositions, originalMaxPositions: c.original_max_position_embeddings });
  if (rope.type === "longrope" && (rope.shortFactor.length !== rotaryDim / 2 || rope.longFactor.length !== rotaryDim / 2)) {
    fail("config", `longrope needs ${rotaryDim / 2} short and long factors (half the rotary dims), got ${rope.shortFactor.length} and ${rope.longFactor.length}`, {
      file,
      field: c.rope_parameters != null ? "rope_parameters.short_factor" : "rope_scaling.short_factor",
    });
  }
  return {
    modelType,
    ...shape,
    vocabSize: c.vocab_size,
    normEps: c.rms_norm_eps,
    activation: c.hidden_act,
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
    rope,
    ...commonConfig(c),
    family: { rotaryDim, slidingWindow: c.sliding_window ?? null },
    raw,
  };
}

/** Phi3Config renames rope types "su" and "yarn" to "longrope". */
function longRopeNamed<T extends { rope_scaling?: RopeBlock | null; rope_parameters?: RopeBlock | null }>(c: T): T {
  const rename = (b: RopeBlock | null | undefined) => {
    const type = b?.rope_type ?? b?.type;
    return b != null && (type === "su" || type === "yarn") ? { ...b, rope_type: "longrope", type: undefined } : b;
  };
  return { ...c, rope_scaling: rename(c.rope_scaling), rope_parameters: rename(c.rope_parameters) };
}

function phi3TensorSpec(c: Phi3Config): TensorSpec[] {
  const { hiddenSize: d, headDim: hd, intermediateSize: inner } = c;
  const specs: TensorSpec[] = [{ name: "model.embed_tokens.weight", shape: [c.vocabSize, d] }];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, shape: [d] },
      ...linearSpec(`${p}.self_attn.qkv_proj`, (c.numHeads + 2 * c.numKvHeads) * hd, d, false),
      ...linearSpec(`${p}.self_attn.o_proj`, d, c.numHeads * hd, false),
      { name: `${p}.post_attention_layernorm.weight`, shape: [d] },
      ...linearSpec(`${p}.mlp.gate_up_proj`, 2 * inner, d, false),
      ...linearSpec(`${p}.mlp.down_proj`, d, inner, false),
    );
  }
  specs.push({ name: "model.norm.weight", shape: [d] });
  if (!c.tieWordEmbeddings) specs.push({ name: "lm_head.weight", shape: [c.vocabSize, d] });
  return specs;
}

export function phi3(config: Phi3Config, weights: Weights): CausalLM {
  const { numHeads: heads, numKvHeads: kvHeads, headDim: hd, normEps: eps, intermediateSize: inner } = config;
  const { rotaryDim, slidingWindow } = config.family;
  const invFreq = rotaryInverseFrequencies(config.rope!, rotaryDim);
  const ropeOptions = rotaryOptions(config.rope!, rotaryDim); // LongRoPE's long frequencies and scale
  const activation = nn.ACTIVATIONS[config.activation];
  const [qOut, kvOut] = [heads * hd, kvHeads * hd];

  function block(i: number, x: Value, linear: Linear, rope: Rotary, full: nn.AttentionMask, past: KV | undefined) {
    const p = `model.layers.${i}`;
    const mask = slidingWindow === null ? full : full.window(slidingWindow);
    const qkv = linear(`${p}.self_attn.qkv_proj`, rmsNorm(weights, `${p}.input_layernorm`, x, eps), false); // [B, T, q | k | v]
    const q = o.slice(qkv, -1, 0, qOut);
    const k = o.slice(qkv, -1, qOut, qOut + kvOut);
    const v = o.slice(qkv, -1, qOut + kvOut, qOut + 2 * kvOut);
    const { out, kv } = attendHeads(q, k, v, past, { heads, kvHeads, headDim: hd, scale: 1 / Math.sqrt(hd), mask, rope });
    x = o.add(x, linear(`${p}.self_attn.o_proj`, out, false));
    // Gated MLP with gate | up in one projection [B, T, 2·inner]: down(up ⊙ act(gate)).
    const gateUp = linear(`${p}.mlp.gate_up_proj`, rmsNorm(weights, `${p}.post_attention_layernorm`, x, eps), false);
    const hidden = o.mul(o.slice(gateUp, -1, inner, 2 * inner), activation(o.slice(gateUp, -1, 0, inner)));
    x = o.add(x, linear(`${p}.mlp.down_proj`, hidden, false));
    return { x, kv };
  }

  return llamaLayoutDecoder(config, weights, (positions) => nn.rotaryTables(positions, invFreq, ropeOptions), block);
}

registerArchitecture<Phi3Fields>({
  modelTypes: ["phi3"],
  positions: "rotary",
  ignoredTensors: [ROTARY_BUFFERS],
  parseConfig: parsePhi3Config,
  tensorSpec: phi3TensorSpec,
  build: phi3,
});
