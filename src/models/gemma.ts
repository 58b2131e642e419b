/**
 * Gemma 2 (Gemma Team 2024, "Gemma 2: Improving Open Language Models at a Practical Size") and Gemma 3
 * text (Gemma Team 2025, "Gemma 3 Technical Report"), following HF transformers' modeling_gemma2.py and
 * modeling_gemma3.py (Gemma3ForCausalLM):
 *  - embeddings scaled by √hidden, the scale rounded to the checkpoint's dtype as transformers does;
 *  - RMSNorm with (1 + w), before AND after both attention and the GELU-tanh gated MLP;
 *  - attention scaled by 1/√query_pre_attn_scalar, over local sliding-window layers interleaved with
 *    global ones (layer_types, or the family's pattern: every 2nd layer global in Gemma 2, every 6th in Gemma 3);
 *  - Gemma 2: attention-logit and final-logit soft-capping (cap·tanh(x/cap));
 *  - Gemma 3: RMSNorm on each head of q and k, and two rotary bases, one for local layers and one
 *    (optionally linearly scaled) for global ones. (Gemma 3's attention ignores attn_logit_softcapping,
 *    as transformers does; its final-logit soft-capping is applied when set.)
 */
import { z } from "zod";
import { fail } from "../util/errors.js";
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
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
import { type RopeConfig, parseRope, ropeBlock, ropeFields, ropeFromBlock, rotaryInverseFrequencies } from "./rope.js";
import type { CausalLM, ForwardArgs, ForwardResult, KV, Weights } from "./causal-lm.js";
import { type Linear, type Rotary, attendHeads, gatedMlp, hookedLinear, linearSpec, rmsNormPlusOne, runBlocks, ROTARY_BUFFERS } from "./blocks.js";
import { type TensorSpec, registerArchitecture } from "./registry.js";

/** Gemma2Config's and Gemma3TextConfig's fields (the same names; defaults differ, see below). */
const gemmaSchema = z.looseObject({
  ...commonFields,
  ...ropeFields,
  ...decoderFields,
  rms_norm_eps: eps.default(1e-6),
  hidden_activation: activationName.nullish(),
  hidden_act: activationName.nullish(),
  attention_bias: z.boolean().default(false),
  query_pre_attn_scalar: z.number().positive().default(256),
  sliding_window: count.nullish(),
  layer_types: layerTypesField,
  final_logit_softcapping: z.number().positive().nullish(),
  attn_logit_softcapping: z.number().positive().nullish(),
  use_bidirectional_attention: z.boolean().nullish(),
  // Gemma 3 in the 4.x format: the local rotary base, and the interleaving (5.x saves `_sliding_window_pattern`).
  rope_local_base_freq: z.number().positive().nullish(),
  sliding_window_pattern: count.nullish(),
  _sliding_window_pattern: count.nullish(),
});
type GemmaRaw = z.infer<typeof gemmaSchema>;

export interface GemmaFields {
  attentionBias: boolean;
  /** Attention scores are scaled by this^-0.5. */
  queryPreAttnScalar: number;
  /** Per layer, the window its attention is limited to, or null for a global layer. */
  windows: (number | null)[];
  /** Per layer, the rotary settings (Gemma 3: local and global bases differ). */
  ropes: RopeConfig[];
  /** q_norm and k_norm on each head (Gemma 3). */
  qkNorm: boolean;
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  /** √hidden rounded to the checkpoint's dtype, as transformers' embed_scale. */
  embedScale: number;
}
export type GemmaConfig = ModelConfig<GemmaFields>;

function parseGemmaConfig(raw: Record<string, unknown>, modelType: string, file: string): GemmaConfig {
  refuseQuantization(raw, file);
  const c = validateConfig(gemmaSchema, raw, file);
  const gemma3 = modelType === "gemma3_text";
  if (c.use_bidirectional_attention === true) {
    fail("config", "bidirectional attention (use_bidirectional_attention: true) is not supported; causal language models only", {
      file,
      field: "use_bidirectional_attention",
    });
  }
  const shape = decoderShape(c, file, 256);
  const window = c.sliding_window ?? 4096;
  const pattern = gemma3 ? (c.sliding_window_pattern ?? c._sliding_window_pattern ?? 6) : 2;
  const types = layerTypes(c.layer_types, shape.numLayers, (i): LayerType => ((i + 1) % pattern !== 0 ? "sliding_attention" : "full_attention"), file);
  const common = commonConfig(c);
  return {
    modelType,
    ...shape,
    vocabSize: c.vocab_size,
    normEps: c.rms_norm_eps,
    activation: c.hidden_activation ?? c.hidden_act ?? "gelu_pytorch_tanh",
    tieWordEmbeddings: c.tie_word_embeddings ?? true,
    rope: gemma3 ? gemma3Ropes(c, file).full_attention : parseRope(c, file),
    ...common,
    family: {
      attentionBias: c.attention_bias,
      queryPreAttnScalar: c.query_pre_attn_scalar,
      windows: types.map((t) => (t === "sliding_attention" ? window : null)),
      ropes: gemma3 ? types.map((t) => gemma3Ropes(c, file)[t]) : types.map(() => parseRope(c, file)),
      qkNorm: gemma3,
      attnSoftcap: gemma3 ? null : c.attn_logit_softcapping === undefined ? 50 : c.attn_logit_softcapping,
      finalSoftcap: c.final_logit_softcapping === undefined ? (gemma3 ? null : 30) : c.final_logit_softcapping,
      embedScale: inDtype(Math.sqrt(shape.hiddenSize), common.dtype),
    },
    raw,
  };
}

const nestedRope = z.looseObject({ full_attention: ropeBlock.nullish(), sliding_attention: ropeBlock.nullish() });

/**
 * Gemma 3's two rotary settings, as Gemma3TextConfig reads them: 5.x nests rope_parameters by layer
 * type; 4.x has the global base in rope_theta (default 1e6) with rope_scaling, the local one in
 * rope_local_base_freq (default 1e4), unscaled.
 */
function gemma3Ropes(c: GemmaRaw, file: string): Record<LayerType, RopeConfig> {
  const nested = c.rope_parameters != null ? validateConfig(nestedRope, c.rope_parameters, file) : null;
  if (nested !== null && (nested.full_attention != null || nested.sliding_attention != null)) {
    const full = nested.full_attention ?? {};
    const sliding = nested.sliding_attention ?? {};
    return {
      full_attention: ropeFromBlock(full, full.rope_theta ?? c.rope_theta ?? 1e6, "rope_parameters.full_attention", file),
      sliding_attention: ropeFromBlock(sliding, sliding.rope_theta ?? c.rope_local_base_freq ?? 1e4, "rope_parameters.sliding_attention", file),
    };
  }
  return {
    full_attention: parseRope(c, file, 1e6),
    sliding_attention: { type: "default", theta: c.rope_local_base_freq ?? 1e4 },
  };
}

/** A float rounded to a checkpoint dtype's precision (bfloat16: 8 significant bits, float16: 11). */
function inDtype(v: number, dtype: string): number {
  const bits = dtype === "bfloat16" ? 8 : dtype === "float16" ? 11 : 24;
  const step = 2 ** (Math.floor(Math.log2(Math.abs(v))) - (bits - 1));
  return Math.fround(Math.round(v / step) * step);
}

function gemmaTensorSpec(c: GemmaConfig): TensorSpec[] {
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
      ...(c.family.qkNorm
        ? [
            { name: `${p}.self_attn.q_norm.weight`, shape: [hd] },
            { name: `${p}.self_attn.k_norm.weight`, shape: [hd] },
          ]
        : []),
      { name: `${p}.post_attention_layernorm.weight`, shape: [d] },
      { name: `${p}.pre_feedforward_layernorm.weight`, shape: [d] },
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

export function gemma(config: GemmaConfig, weights: Weights): CausalLM {
  const { numHeads: heads, numKvHeads: kvHeads, headDim: hd, normEps: eps } = config;
  const f = config.family;
  const norm = (module: string, x: Value) => rmsNormPlusOne(weights, module, x, eps);
  // One inverse-frequency table per distinct rotary setting (local and global), shared by their layers.
  const invFreqs = new Map(f.ropes.map((r) => [JSON.stringify(r), rotaryInverseFrequencies(r, hd)]));

  function block(i: number, x: Value, linear: Linear, rope: Rotary, mask: nn.AttentionMask, past: KV | undefined) {
    const p = `model.layers.${i}`;
    const a = `${p}.self_attn`;
    const window = f.windows[i];
    // Attention, normed before and after: x + post_norm(attn(pre_norm(x))).
    const h = norm(`${p}.input_layernorm`, x);
    const { out, kv } = attendHeads(linear(`${a}.q_proj`, h, f.attentionBias), linear(`${a}.k_proj`, h, f.attentionBias), linear(`${a}.v_proj`, h, f.attentionBias), past, {
      heads,
      kvHeads,
      headDim: hd,
      scale: 1 / Math.sqrt(f.queryPreAttnScalar),
      mask: window === null ? mask : mask.window(window),
      rope,
      ...(f.qkNorm ? { qNorm: (q: Value) => norm(`${a}.q_norm`, q), kNorm: (k: Value) => norm(`${a}.k_norm`, k) } : {}),
      ...(f.attnSoftcap !== null ? { softcap: f.attnSoftcap } : {}),
    });
    x = o.add(x, norm(`${p}.post_attention_layernorm`, linear(`${a}.o_proj`, out, f.attentionBias)));
    // The MLP likewise: x + post_ff_norm(mlp(pre_ff_norm(x))).
    const mlp = gatedMlp(linear, `${p}.mlp`, norm(`${p}.pre_feedforward_layernorm`, x), config.activation, false);
    x = o.add(x, norm(`${p}.post_feedforward_layernorm`, mlp));
    return { x, kv };
  }

  const headWeight = config.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  return {
    config,
    weights,
    embeddingName: "model.embed_tokens.weight",
    // The scale belongs to the embedding module, so soft prompts (inputs_embeds) are not scaled, as in PEFT.
    embed: (ids) => o.mul(o.gather(weights.get("model.embed_tokens.weight"), ids, 0), f.embedScale),
    forward({ inputsEmbeds, positions, allowed, past, hooks }: ForwardArgs): ForwardResult {
      const tables = new Map([...invFreqs].map(([key, inv]) => [key, nn.rotaryTables(positions, inv)]));
      const mask = new nn.AttentionMask(allowed, positions, past !== undefined);
      const linear = hookedLinear(weights, "out_in", hooks);
      const ropeOf = (i: number) => tables.get(JSON.stringify(f.ropes[i]))!;
      return runBlocks(inputsEmbeds, config.numLayers, past, (i, h, kv) => block(i, h, linear, ropeOf(i), mask, kv), (h) => norm("model.norm", h));
    },
    lmHead: (h, rows) => {
      const logits = nn.outputLogits(h, weights.get(headWeight), rows);
      return f.finalSoftcap === null ? logits : nn.softcap(logits, f.finalSoftcap);
    },
  };
}

registerArchitecture<GemmaFields>({
  modelTypes: ["gemma2", "gemma3_text"],
  positions: "rotary",
  ignoredTensors: [ROTARY_BUFFERS],
  parseConfig: parseGemmaConfig,
  tensorSpec: gemmaTensorSpec,
  build: gemma,
});
