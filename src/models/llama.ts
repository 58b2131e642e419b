/**
 * The Llama family (Touvron et al. 2023) — Llama, Mistral, Qwen2, SmolLM — following HF transformers'
 * modeling_llama.py: RMSNorm pre-norm blocks, rotary position embeddings on q and k, grouped-query
 * attention, SwiGLU MLP; nn.Linear weights stored [out, in] and used as stored. Qwen2 adds q/k/v biases.
 */
import { z } from "zod";
import { fail } from "../util/errors.js";
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import type { ModelConfig } from "./config.js";
import { activationName, commonConfig, commonFields, count, eps, validateConfig } from "./config-fields.js";
import { parseRope, ropeFields, rotaryInverseFrequencies } from "./rope.js";
import type { CausalLM, KV, Weights } from "./causal-lm.js";
import { type Linear, attendPast, gatedMlp, mergeHeads, rmsNorm, splitHeads, ROTARY_BUFFERS, llamaLayoutDecoder, type Rotary } from "./blocks.js";
import { type TensorSpec, registerArchitecture } from "./registry.js";

/** LlamaConfig's fields (MistralConfig and Qwen2Config are the same shape), with their defaults. */
const llamaSchema = z.looseObject({
  ...commonFields,
  ...ropeFields,
  hidden_size: count,
  num_hidden_layers: count,
  num_attention_heads: count,
  num_key_value_heads: count.nullish(),
  head_dim: count.nullish(),
  intermediate_size: count,
  max_position_embeddings: count,
  rms_norm_eps: eps.default(1e-6),
  hidden_act: activationName.default("silu"),
  attention_bias: z.boolean().default(false),
  mlp_bias: z.boolean().default(false),
  sliding_window: count.nullish(),
  use_sliding_window: z.boolean().optional(),
  layer_types: z.array(z.string()).optional(),
});
type LlamaRaw = z.infer<typeof llamaSchema>;

export interface LlamaFields {
  /** Biases on the q/k/v projections and on the output projection (qwen2 has the first, not the second). */
  attentionBias: { qkv: boolean; output: boolean };
  mlpBias: boolean;
  /** The attention window transformers applies, or null for full attention. */
  slidingWindow: number | null;
}
export type LlamaConfig = ModelConfig<LlamaFields>;

function parseLlamaConfig(raw: Record<string, unknown>, modelType: string, file: string): LlamaConfig {
  const c = validateConfig(llamaSchema, raw, file);
  const numKvHeads = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % numKvHeads !== 0) {
    fail("config", `num_attention_heads ${c.num_attention_heads} is not a multiple of num_key_value_heads ${numKvHeads}`, {
      file,
      field: "num_key_value_heads",
    });
  }
  if (c.head_dim == null && c.hidden_size % c.num_attention_heads !== 0) {
    fail("config", `hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`, {
      file,
      field: "num_attention_heads",
    });
  }
  return {
    modelType,
    hiddenSize: c.hidden_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads,
    headDim: c.head_dim ?? c.hidden_size / c.num_attention_heads,
    intermediateSize: c.intermediate_size,
    vocabSize: c.vocab_size,
    maxPositions: c.max_position_embeddings,
    normEps: c.rms_norm_eps,
    activation: c.hidden_act,
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
    rope: parseRope(c, file),
    ...commonConfig(c),
    family: {
      attentionBias: attentionBias(modelType, c.attention_bias),
      // Only Llama's config has the switch; Mistral and Qwen2 MLPs have no biases.
      mlpBias: modelType === "llama" && c.mlp_bias,
      slidingWindow: slidingWindow(modelType, c, file),
    },
    raw,
  };
}

function attentionBias(modelType: string, configured: boolean): LlamaFields["attentionBias"] {
  if (modelType === "qwen2") return { qkv: true, output: false };
  if (modelType === "mistral") return { qkv: false, output: false };
  return { qkv: configured, output: configured };
}

/**
 * Mistral applies sliding_window whenever it is set; Qwen2 only with use_sliding_window (or, in 5.x,
 * sliding layers in layer_types). A Qwen2 window shorter than the context changes the model's answers,
 * and is not implemented, so it is rejected rather than silently ignored.
 */
function slidingWindow(modelType: string, c: LlamaRaw, file: string): number | null {
  const window = c.sliding_window ?? null;
  if (modelType === "mistral") return window;
  if (modelType !== "qwen2") return null;
  const used = c.use_sliding_window === true || (c.layer_types ?? []).includes("sliding_attention");
  if (!used || window === null) return null;
  if (window < c.max_position_embeddings) {
    fail(
      "config",
      `sliding-window attention (window ${window} < max_position_embeddings ${c.max_position_embeddings}) is not supported`,
      { file, field: "use_sliding_window" },
    );
  }
  return window;
}

/** nn.Linear weights are [out, in]; k and v have numKvHeads heads; lm_head only when untied. */
function llamaTensorSpec(c: LlamaConfig): TensorSpec[] {
  const d = c.hiddenSize;
  const qOut = c.numHeads * c.headDim;
  const kvOut = c.numKvHeads * c.headDim;
  const inner = c.intermediateSize;
  const { attentionBias: bias, mlpBias } = c.family;
  const linear = (name: string, out: number, inp: number, withBias: boolean): TensorSpec[] => [
    { name: `${name}.weight`, shape: [out, inp] },
    ...(withBias ? [{ name: `${name}.bias`, shape: [out] }] : []),
  ];
  const specs: TensorSpec[] = [{ name: "model.embed_tokens.weight", shape: [c.vocabSize, d] }];
  for (let i = 0; i < c.numLayers; i++) {
    const layer = `model.layers.${i}`;
    specs.push(
      { name: `${layer}.input_layernorm.weight`, shape: [d] },
      ...linear(`${layer}.self_attn.q_proj`, qOut, d, bias.qkv),
      ...linear(`${layer}.self_attn.k_proj`, kvOut, d, bias.qkv),
      ...linear(`${layer}.self_attn.v_proj`, kvOut, d, bias.qkv),
      ...linear(`${layer}.self_attn.o_proj`, d, qOut, bias.output),
      { name: `${layer}.post_attention_layernorm.weight`, shape: [d] },
      ...linear(`${layer}.mlp.gate_proj`, inner, d, mlpBias),
      ...linear(`${layer}.mlp.up_proj`, inner, d, mlpBias),
      ...linear(`${layer}.mlp.down_proj`, d, inner, mlpBias),
    );
  }
  specs.push({ name: "model.norm.weight", shape: [d] });
  if (!c.tieWordEmbeddings) specs.push({ name: "lm_head.weight", shape: [c.vocabSize, d] });
  return specs;
}

export function llama(config: LlamaConfig, weights: Weights): CausalLM {
  const { numHeads: heads, numKvHeads: kvHeads, headDim: hd, normEps: eps } = config;
  const { attentionBias: bias, mlpBias } = config.family;
  const invFreq = rotaryInverseFrequencies(config.rope!, hd);

  const window = config.family.slidingWindow;

  function block(i: number, x: Value, linear: Linear, rope: Rotary, full: nn.AttentionMask, past: KV | undefined) {
    const p = `model.layers.${i}`;
    const mask = window === null ? full : full.window(window); // Mistral's window is on every layer
    // Attention with rotary q, k; the new keys join the past after rotation (cached keys are rotated already).
    const h = rmsNorm(weights, `${p}.input_layernorm`, x, eps);
    const q = nn.rotary(splitHeads(linear(`${p}.self_attn.q_proj`, h, bias.qkv), heads, hd), rope.cos, rope.sin); // [B, H, T, hd]
    const k = nn.rotary(splitHeads(linear(`${p}.self_attn.k_proj`, h, bias.qkv), kvHeads, hd), rope.cos, rope.sin); // [B, Hkv, T, hd]
    const { out, kv } = attendPast(q, past, k, splitHeads(linear(`${p}.self_attn.v_proj`, h, bias.qkv), kvHeads, hd), mask, 1 / Math.sqrt(hd));
    const attn = mergeHeads(out, heads, hd); // [B, T, H·hd]
    x = o.add(x, linear(`${p}.self_attn.o_proj`, attn, bias.output));
    const h2 = rmsNorm(weights, `${p}.post_attention_layernorm`, x, eps);
    x = o.add(x, gatedMlp(linear, `${p}.mlp`, h2, config.activation, mlpBias));
    return { x, kv };
  }

  return llamaLayoutDecoder(config, weights, (positions) => nn.rotaryTables(positions, invFreq), block);
}

registerArchitecture<LlamaFields>({
  modelTypes: ["llama", "mistral", "qwen2"],
  positions: "rotary",
  // Rotary frequencies older checkpoints saved as buffers; they are recomputed from the config.
  ignoredTensors: [ROTARY_BUFFERS],
  parseConfig: parseLlamaConfig,
  tensorSpec: llamaTensorSpec,
  build: llama,
});
