// The new families' config.json in the formats of the wild (transformers 4.x and 5.x, as the hub's
// checkpoints spell them), read as transformers 5.18 reads them; options we do not implement are
// refused naming the option and its value.
import { describe, expect, it } from "vitest";
import { parseModelConfig } from "../../src/models/config.js";
import { SoftpromptError } from "../../src/util/errors.js";

const parse = (json: Record<string, unknown>) => parseModelConfig(json, "model/config.json");
function configError(json: Record<string, unknown>): SoftpromptError {
  try {
    parse(json);
  } catch (err) {
    if (err instanceof SoftpromptError) return err;
    throw err;
  }
  throw new Error("expected a config error");
}

// google/gemma-3-270m's config.json (transformers 4.x), abridged to the fields that matter.
const gemma3_270m = {
  model_type: "gemma3_text",
  architectures: ["Gemma3ForCausalLM"],
  hidden_size: 640,
  intermediate_size: 2048,
  num_hidden_layers: 18,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  head_dim: 256,
  max_position_embeddings: 32768,
  query_pre_attn_scalar: 256,
  rms_norm_eps: 1e-6,
  rope_local_base_freq: 10000.0,
  rope_scaling: null,
  rope_theta: 1000000.0,
  sliding_window: 512,
  sliding_window_pattern: 6,
  attn_logit_softcapping: null,
  final_logit_softcapping: null,
  hidden_activation: "gelu_pytorch_tanh",
  torch_dtype: "bfloat16",
  vocab_size: 262144,
  eos_token_id: 1,
  pad_token_id: 0,
  bos_token_id: 2,
};

// Qwen/Qwen3-0.6B (4.x).
const qwen3_06b = {
  model_type: "qwen3",
  hidden_size: 1024,
  intermediate_size: 3072,
  num_hidden_layers: 28,
  num_attention_heads: 16,
  num_key_value_heads: 8,
  head_dim: 128,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  use_sliding_window: false,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  vocab_size: 151936,
};

// EleutherAI/pythia-160m (4.x: rotary_pct, rotary_emb_base).
const pythia160m = {
  model_type: "gpt_neox",
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  max_position_embeddings: 2048,
  rotary_pct: 0.25,
  rotary_emb_base: 10000,
  use_parallel_residual: true,
  hidden_act: "gelu",
  layer_norm_eps: 1e-5,
  tie_word_embeddings: false,
  vocab_size: 50304,
};

// microsoft/Phi-4-mini-instruct's shape (4.x: partial_rotary_factor at the top, LongRoPE scaling).
const phi4mini = {
  model_type: "phi3",
  hidden_size: 3072,
  intermediate_size: 8192,
  num_hidden_layers: 32,
  num_attention_heads: 24,
  num_key_value_heads: 8,
  max_position_embeddings: 131072,
  original_max_position_embeddings: 4096,
  partial_rotary_factor: 0.75,
  rope_theta: 10000.0,
  rope_scaling: { type: "longrope", long_factor: Array(48).fill(2), short_factor: Array(48).fill(1) },
  sliding_window: 262144,
  tie_word_embeddings: true,
  vocab_size: 200064,
};

describe("4.x configs read as transformers 5.18 reads them", () => {
  it("gemma3_text: every 6th layer global, local base 1e4 for sliding layers and 1e6 for global ones, bf16 embedding scale", () => {
    const c = parse(gemma3_270m) as ReturnType<typeof parse> & { family: Record<string, unknown> };
    const windows = Array.from({ length: 18 }, (_, i) => ((i + 1) % 6 === 0 ? null : 512));
    expect(c).toMatchObject({ headDim: 256, numKvHeads: 1, tieWordEmbeddings: true, activation: "gelu_pytorch_tanh" });
    expect(c.family).toMatchObject({ windows, queryPreAttnScalar: 256, qkNorm: true, attnSoftcap: null, finalSoftcap: null });
    const ropes = c.family.ropes as { theta: number }[];
    expect(ropes.map((r) => r.theta)).toEqual(windows.map((w) => (w === null ? 1e6 : 1e4)));
    // torch.tensor(640 ** 0.5).to(bfloat16) = 25.25, not 25.298…
    expect(c.family.embedScale).toBe(25.25);
  });

  it("gemma2: soft-capping defaults (50, 30) and every other layer sliding", () => {
    const c = parse({ ...gemma3_270m, model_type: "gemma2", sliding_window_pattern: undefined, attn_logit_softcapping: undefined, final_logit_softcapping: undefined, num_hidden_layers: 4 });
    expect(c.family).toMatchObject({ attnSoftcap: 50, finalSoftcap: 30, windows: [512, null, 512, null], qkNorm: false });
  });

  it("qwen3: no window without use_sliding_window; head_dim 128 by default", () => {
    expect(parse(qwen3_06b)).toMatchObject({ headDim: 128, family: { windows: Array(28).fill(null), attentionBias: false } });
    const { head_dim: _, ...noHeadDim } = qwen3_06b;
    expect(parse(noHeadDim).headDim).toBe(128);
    const sliding = parse({ ...qwen3_06b, use_sliding_window: true, sliding_window: 4096, max_window_layers: 26 });
    expect((sliding.family as { windows: unknown[] }).windows.slice(24)).toEqual([null, null, 4096, 4096]);
  });

  it("gpt_neox: rotary_pct and rotary_emb_base (4.x) as rope_parameters (5.x)", () => {
    const old = parse(pythia160m);
    expect(old).toMatchObject({ headDim: 64, numKvHeads: 12, rope: { type: "default", theta: 10000 }, family: { rotaryDim: 16, parallelResidual: true } });
    const { rotary_pct: _p, rotary_emb_base: _b, ...rest } = pythia160m;
    const v5 = parse({ ...rest, rope_parameters: { rope_type: "default", rope_theta: 10000, partial_rotary_factor: 0.25 } });
    expect(v5.family).toEqual(old.family);
    expect(v5.rope).toEqual(old.rope);
  });

  it("phi3: LongRoPE (4.x rope_scaling, and 'su' as older configs name it) with transformers' default attention factor", () => {
    const want = { type: "longrope", originalMaxPositions: 4096, attentionFactor: Math.sqrt(1 + Math.log(32) / Math.log(4096)) };
    expect(parse(phi4mini)).toMatchObject({ headDim: 128, rope: want, family: { rotaryDim: 96 } });
    expect(parse({ ...phi4mini, rope_scaling: { ...phi4mini.rope_scaling, type: "su" } }).rope).toMatchObject(want);
  });

  it("smollm3: every 4th layer without rotary by default", () => {
    const c = parse({ ...qwen3_06b, model_type: "smollm3", num_hidden_layers: 8, head_dim: undefined, num_attention_heads: 16 });
    expect(c.family).toMatchObject({ useRope: [true, true, true, false, true, true, true, false], windows: Array(8).fill(null) });
  });
});

describe("options we do not implement are refused by name and value", () => {
  it.each([
    ["phi3 dynamic rope", { ...phi4mini, rope_scaling: { type: "dynamic", factor: 2 } }, "rope_scaling.rope_type", /rope type "dynamic" is not supported; supported: default, linear, llama3, longrope/],
    ["phi3 LongRoPE with too few factors", { ...phi4mini, rope_scaling: { type: "longrope", long_factor: [1, 2], short_factor: [1, 1] } }, "rope_scaling.short_factor", /longrope needs 48 short and long factors/],
    ["LongRoPE where the family does not read it (qwen3)", { ...qwen3_06b, rope_scaling: { rope_type: "longrope", long_factor: [1], short_factor: [1] } }, "rope_scaling.rope_type", /rope type "longrope" is not supported; supported: default, linear, llama3$/],
    [
      "gemma3 yarn on global layers (5.x nested rope_parameters)",
      { ...gemma3_270m, rope_parameters: { full_attention: { rope_type: "yarn", factor: 8 }, sliding_attention: { rope_type: "default" } } },
      "rope_parameters.full_attention.rope_type",
      /rope type "yarn" is not supported/,
    ],
    ["gemma3 bidirectional attention", { ...gemma3_270m, use_bidirectional_attention: true }, "use_bidirectional_attention", /bidirectional attention \(use_bidirectional_attention: true\) is not supported/],
    ["a chunked-attention layer type", { ...qwen3_06b, num_hidden_layers: 2, layer_types: ["full_attention", "chunked_attention"] }, "layer_types[1]", /layer type "chunked_attention" is not supported; supported: full_attention, sliding_attention/],
    ["a quantized checkpoint", { ...pythia160m, quantization_config: { quant_method: "gptq", bits: 4 } }, "quantization_config", /quant_method "gptq"\) are not supported/],
    ["olmo2 quantized with bitsandbytes", { ...qwen3_06b, model_type: "olmo2", quantization_config: { quant_method: "bitsandbytes" } }, "quantization_config", /"bitsandbytes"/],
  ])("%s", (_name, json, field, message) => {
    const err = configError(json);
    expect(err.code).toBe("config");
    expect(err.place).toMatchObject({ file: "model/config.json", field });
    expect(err.message).toMatch(message);
  });
});
