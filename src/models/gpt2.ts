/**
 * GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"), following
 * HF transformers' modeling_gpt2.py: pre-norm blocks, learned absolute positions, Conv1D weights
 * stored [in, out] (used as stored), LM head tied to the token embeddings (wte, used as [V, d]).
 */
import { fail } from "../util/errors.js";
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import type { ModelConfig } from "./config.js";
import { type CausalLM, type ForwardArgs, type ForwardResult, type KV, Weights, mergeHeads, runBlocks, splitHeads, withPast } from "./causal-lm.js";

export function gpt2(config: ModelConfig, weights: Weights): CausalLM {
  const d = config.hiddenSize;
  const heads = config.numHeads;
  const hd = config.headDim;
  const w = (name: string) => weights.get(name);
  const activation = pickActivation(config);
  checkShapes(config, weights);

  function block(i: number, x: Value, mask: nn.AttentionMask, past: KV | undefined): { x: Value; kv: KV } {
    const p = `h.${i}`;
    // Attention: one Conv1D projects to q|k|v, each [B, T, d]. (Slicing the weight instead measured
    // no faster and held 80 MB more.)
    const h = o.layerNorm(x, w(`${p}.ln_1.weight`), w(`${p}.ln_1.bias`), config.normEps);
    const qkv = nn.linear(h, w(`${p}.attn.c_attn.weight`), w(`${p}.attn.c_attn.bias`), "in_out"); // [B, T, 3d]
    const q = splitHeads(o.slice(qkv, -1, 0, d), heads, hd); // [B, H, T, hd]
    const kv = withPast(past, splitHeads(o.slice(qkv, -1, d, 2 * d), heads, hd), splitHeads(o.slice(qkv, -1, 2 * d, 3 * d), heads, hd));
    const scale = config.scaleAttnWeights ? 1 / Math.sqrt(hd) : 1;
    const attn = mergeHeads(nn.attention(q, kv.key, kv.value, mask, scale), heads, hd); // [B, T, d]
    x = o.add(x, nn.linear(attn, w(`${p}.attn.c_proj.weight`), w(`${p}.attn.c_proj.bias`), "in_out"));
    // MLP: d → 4d → d.
    const h2 = o.layerNorm(x, w(`${p}.ln_2.weight`), w(`${p}.ln_2.bias`), config.normEps);
    const up = activation(nn.linear(h2, w(`${p}.mlp.c_fc.weight`), w(`${p}.mlp.c_fc.bias`), "in_out"));
    x = o.add(x, nn.linear(up, w(`${p}.mlp.c_proj.weight`), w(`${p}.mlp.c_proj.bias`), "in_out"));
    return { x, kv };
  }

  return {
    config,
    weights,
    embeddingName: "wte.weight",
    embed: (ids) => o.gather(w("wte.weight"), ids, 0),
    forward({ inputsEmbeds, positions, allowed, past }: ForwardArgs): ForwardResult {
      const x = o.add(inputsEmbeds, o.gather(w("wpe.weight"), positions, 0)); // token + position embeddings
      const mask = new nn.AttentionMask(allowed); // shared by every layer
      return runBlocks(x, config.numLayers, past, (i, h, kv) => block(i, h, mask, kv), (h) =>
        o.layerNorm(h, w("ln_f.weight"), w("ln_f.bias"), config.normEps),
      );
    },
    // Usually tied: logits = h · wteᵀ, with wte used as stored.
    lmHead: (h) => o.gemm(h, w(config.tieWordEmbeddings ? "wte.weight" : "lm_head.weight"), { transB: true }),
  };
}

function pickActivation(config: ModelConfig): (x: Value) => Value {
  switch (config.activation) {
    case "gelu_new":
    case "gelu_pytorch_tanh":
      return nn.geluTanh;
    case "gelu":
      return nn.gelu;
    case "relu":
      return nn.relu;
    case "silu":
      return nn.silu;
  }
}

function checkShapes(c: ModelConfig, weights: Weights): void {
  const d = c.hiddenSize;
  const expect = (name: string, shape: number[]) => weights.expectShape(name, shape);
  expect("wte.weight", [c.vocabSize, d]);
  expect("wpe.weight", [c.maxPositions, d]);
  for (let i = 0; i < c.numLayers; i++) {
    for (const ln of ["ln_1", "ln_2"]) {
      expect(`h.${i}.${ln}.weight`, [d]);
      expect(`h.${i}.${ln}.bias`, [d]);
    }
    expect(`h.${i}.attn.c_attn.weight`, [d, 3 * d]);
    expect(`h.${i}.attn.c_attn.bias`, [3 * d]);
    expect(`h.${i}.attn.c_proj.weight`, [d, d]);
    expect(`h.${i}.attn.c_proj.bias`, [d]);
    expect(`h.${i}.mlp.c_fc.weight`, [d, c.intermediateSize]);
    expect(`h.${i}.mlp.c_fc.bias`, [c.intermediateSize]);
    expect(`h.${i}.mlp.c_proj.weight`, [c.intermediateSize, d]);
    expect(`h.${i}.mlp.c_proj.bias`, [d]);
  }
  expect("ln_f.weight", [d]);
  expect("ln_f.bias", [d]);
  if (!c.tieWordEmbeddings) expect("lm_head.weight", [c.vocabSize, d]);
  if (c.headDim * c.numHeads !== d) fail("config", `n_embd ${d} is not n_head ${c.numHeads} × head size`, { field: "n_embd" });
}
