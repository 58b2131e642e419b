/**
 * The Llama family (Touvron et al. 2023) — Llama, Mistral, Qwen2, SmolLM — following HF transformers'
 * modeling_llama.py: RMSNorm pre-norm blocks, rotary position embeddings on q and k, grouped-query
 * attention, SwiGLU MLP; nn.Linear weights stored [out, in] and used as stored. Qwen2 adds q/k/v biases.
 */
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import type { ModelConfig, RopeConfig } from "./config.js";
import { type CausalLM, type ForwardArgs, type ForwardResult, type KV, Weights, mergeHeads, runBlocks, splitHeads, withPast } from "./causal-lm.js";

export function llama(config: ModelConfig, weights: Weights): CausalLM {
  const { numHeads: heads, numKvHeads: kvHeads, headDim: hd, normEps: eps } = config;
  const w = (name: string) => weights.get(name);
  const bias = (name: string, on: boolean) => (on ? w(name) : undefined);
  const invFreq = rotaryInverseFrequencies(config.rope!, hd);
  checkShapes(config, weights);

  function block(i: number, x: Value, rope: { cos: Value; sin: Value }, mask: nn.AttentionMask, past: KV | undefined) {
    const p = `model.layers.${i}`;
    const { qkv, output } = config.attentionBias;
    const proj = (name: string, h: Value, withBias: boolean) => nn.linear(h, w(`${p}.${name}.weight`), bias(`${p}.${name}.bias`, withBias), "out_in");
    // Attention with rotary q, k; the new keys join the past after rotation (cached keys are rotated already).
    const h = o.rmsNorm(x, w(`${p}.input_layernorm.weight`), eps);
    const q = nn.rotary(splitHeads(proj("self_attn.q_proj", h, qkv), heads, hd), rope.cos, rope.sin); // [B, H, T, hd]
    const k = nn.rotary(splitHeads(proj("self_attn.k_proj", h, qkv), kvHeads, hd), rope.cos, rope.sin); // [B, Hkv, T, hd]
    const kv = withPast(past, k, splitHeads(proj("self_attn.v_proj", h, qkv), kvHeads, hd));
    const attn = mergeHeads(nn.attention(q, kv.key, kv.value, mask, 1 / Math.sqrt(hd)), heads, hd);
    x = o.add(x, proj("self_attn.o_proj", attn, output));
    // SwiGLU MLP (Shazeer 2020): down(act(gate(h)) ⊙ up(h)).
    const h2 = o.rmsNorm(x, w(`${p}.post_attention_layernorm.weight`), eps);
    const gated = o.mul(activation(config)(proj("mlp.gate_proj", h2, config.mlpBias)), proj("mlp.up_proj", h2, config.mlpBias));
    x = o.add(x, proj("mlp.down_proj", gated, config.mlpBias));
    return { x, kv };
  }

  const headWeight = config.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  return {
    config,
    weights,
    embeddingName: "model.embed_tokens.weight",
    embed: (ids) => o.gather(w("model.embed_tokens.weight"), ids, 0),
    forward({ inputsEmbeds, positions, allowed, past }: ForwardArgs): ForwardResult {
      const rope = nn.rotaryTables(positions, invFreq); // shared by every layer, as is the mask
      const mask = new nn.AttentionMask(allowed);
      return runBlocks(inputsEmbeds, config.numLayers, past, (i, h, kv) => block(i, h, rope, mask, kv), (h) =>
        o.rmsNorm(h, w("model.norm.weight"), eps),
      );
    },
    lmHead: (h) => o.gemm(h, w(headWeight), { transB: true }),
  };
}

function activation(config: ModelConfig): (x: Value) => Value {
  return config.activation === "silu" ? nn.silu : config.activation === "relu" ? nn.relu : config.activation === "gelu" ? nn.gelu : nn.geluTanh;
}

/**
 * inv_freq = 1 / θ^(2i/hd), computed in float32 as HF does; "llama3" scaling (Llama 3.1) divides long
 * wavelengths by `factor`, keeps short ones, and blends smoothly in between.
 */
export function rotaryInverseFrequencies(rope: RopeConfig, hd: number): Float32Array {
  const inv = new Float32Array(hd / 2);
  for (let i = 0; i < hd / 2; i++) inv[i] = 1 / Math.fround(Math.pow(rope.theta, Math.fround((2 * i) / hd)));
  if (rope.type !== "llama3") return inv;
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = rope;
  const lowFreqWavelen = originalMaxPositions / lowFreqFactor;
  const highFreqWavelen = originalMaxPositions / highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / factor;
    const smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

function checkShapes(c: ModelConfig, weights: Weights): void {
  const { hiddenSize: d, numHeads: h, numKvHeads: kv, headDim: hd, intermediateSize: ff } = c;
  const expect = (name: string, shape: number[]) => weights.expectShape(name, shape);
  expect("model.embed_tokens.weight", [c.vocabSize, d]);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    expect(`${p}.input_layernorm.weight`, [d]);
    expect(`${p}.post_attention_layernorm.weight`, [d]);
    for (const [name, out] of [["q_proj", h * hd], ["k_proj", kv * hd], ["v_proj", kv * hd]] as const) {
      expect(`${p}.self_attn.${name}.weight`, [out, d]);
      if (c.attentionBias.qkv) expect(`${p}.self_attn.${name}.bias`, [out]);
    }
    expect(`${p}.self_attn.o_proj.weight`, [d, h * hd]);
    if (c.attentionBias.output) expect(`${p}.self_attn.o_proj.bias`, [d]);
    expect(`${p}.mlp.gate_proj.weight`, [ff, d]);
    expect(`${p}.mlp.up_proj.weight`, [ff, d]);
    expect(`${p}.mlp.down_proj.weight`, [d, ff]);
  }
  expect("model.norm.weight", [d]);
  if (!c.tieWordEmbeddings) expect("lm_head.weight", [c.vocabSize, d]);
}
