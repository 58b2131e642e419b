import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseModelConfig, readModelConfig, type ModelConfig } from "../src/models/config.js";
import { SoftpromptError } from "../src/util/errors.js";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const golden = resolve(repoRoot, "../shared/golden");

/** SmolLM2-135M's config.json: transformers 4.x format, tied embeddings, rope_theta 1e5. */
const smolLM2 = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 0,
  eos_token_id: 0,
  hidden_act: "silu",
  hidden_size: 576,
  initializer_range: 0.041666666666666664,
  intermediate_size: 1536,
  is_llama_config: true,
  max_position_embeddings: 8192,
  model_type: "llama",
  num_attention_heads: 9,
  num_hidden_layers: 30,
  num_key_value_heads: 3,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_interleaved: false,
  rope_scaling: null,
  rope_theta: 100000,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.40.1",
  use_cache: true,
  vocab_size: 49152,
};

/** Llama-3.2-1B's config.json: llama3 rope scaling in the 4.x rope_scaling block. */
const llama32 = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  head_dim: 64,
  hidden_act: "silu",
  hidden_size: 2048,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 32.0,
    high_freq_factor: 4.0,
    low_freq_factor: 1.0,
    original_max_position_embeddings: 8192,
    rope_type: "llama3",
  },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  vocab_size: 128256,
};

/** openai-community/gpt2: no tie_word_embeddings, no dtype, no n_inner. */
const gpt2Hub = {
  activation_function: "gelu_new",
  architectures: ["GPT2LMHeadModel"],
  bos_token_id: 50256,
  eos_token_id: 50256,
  layer_norm_epsilon: 1e-5,
  model_type: "gpt2",
  n_ctx: 1024,
  n_embd: 768,
  n_head: 12,
  n_layer: 12,
  n_positions: 1024,
  vocab_size: 50257,
};

/** Mistral-7B-v0.1: a 4096-token sliding window over a 32k context. */
const mistral = {
  architectures: ["MistralForCausalLM"],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  hidden_size: 4096,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: "mistral",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  sliding_window: 4096,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  vocab_size: 32000,
};

/** Qwen2.5-0.5B: sliding_window is set but switched off. */
const qwen25 = {
  architectures: ["Qwen2ForCausalLM"],
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: "silu",
  hidden_size: 896,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 24,
  model_type: "qwen2",
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  use_sliding_window: false,
  vocab_size: 151936,
};

function configError(json: unknown): SoftpromptError {
  try {
    parseModelConfig(json, "model/config.json");
  } catch (err) {
    expect(err).toBeInstanceOf(SoftpromptError);
    expect((err as SoftpromptError).code).toBe("config");
    return err as SoftpromptError;
  }
  throw new Error("expected a config error");
}

const withoutRaw = ({ raw: _raw, ...rest }: ModelConfig) => rest;

describe.skipIf(!existsSync(golden))("golden configs (transformers 5.x format)", () => {
  it("gpt2", async () => {
    const config = await readModelConfig(join(golden, "gpt2/model"));
    expect(withoutRaw(config)).toEqual({
      modelType: "gpt2",
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 4,
      headDim: 16,
      intermediateSize: 256,
      vocabSize: 512,
      maxPositions: 128,
      normEps: 1e-5,
      activation: "gelu_new",
      tieWordEmbeddings: true,
      rope: null,
      bosTokenId: 511,
      eosTokenIds: [511],
      padTokenId: null,
      dtype: "float32",
      family: { scaleAttnWeights: true },
    });
    expect(config.raw.transformers_version).toBe("5.18.0");
  });

  it("llama", async () => {
    const config = await readModelConfig(join(golden, "llama/model"));
    expect(withoutRaw(config)).toEqual({
      modelType: "llama",
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 16,
      intermediateSize: 128,
      vocabSize: 512,
      maxPositions: 128,
      normEps: 1e-6,
      activation: "silu",
      tieWordEmbeddings: false,
      rope: { type: "default", theta: 10000 },
      bosTokenId: 511,
      eosTokenIds: [511],
      padTokenId: null,
      dtype: "float32",
      family: { attentionBias: { qkv: false, output: false }, mlpBias: false, slidingWindow: null },
    });
  });

  it("qwen2", async () => {
    const config = await readModelConfig(join(golden, "qwen2/model"));
    expect(config).toMatchObject({
      modelType: "qwen2",
      numKvHeads: 2,
      headDim: 16,
      tieWordEmbeddings: true,
      rope: { type: "default", theta: 1e6 },
      family: { attentionBias: { qkv: true, output: false }, mlpBias: false, slidingWindow: null },
    });
  });
});

describe("transformers 4.x configs from the hub", () => {
  it("SmolLM2-135M", () => {
    expect(parseModelConfig(smolLM2, "config.json")).toMatchObject({
      modelType: "llama",
      hiddenSize: 576,
      numLayers: 30,
      numHeads: 9,
      numKvHeads: 3,
      headDim: 64,
      intermediateSize: 1536,
      vocabSize: 49152,
      maxPositions: 8192,
      normEps: 1e-5,
      rope: { type: "default", theta: 100000 },
      tieWordEmbeddings: true,
      bosTokenId: 0,
      eosTokenIds: [0],
      dtype: "bfloat16",
    });
  });

  it("Llama-3.2-1B with llama3 rope scaling and several eos tokens", () => {
    expect(parseModelConfig(llama32, "config.json")).toMatchObject({
      headDim: 64,
      numKvHeads: 8,
      rope: { type: "llama3", theta: 500000, factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
      eosTokenIds: [128001, 128008, 128009],
    });
  });

  it("the same rope in the 5.x rope_parameters block", () => {
    const { rope_scaling, rope_theta, torch_dtype, ...rest } = llama32;
    const v5 = { ...rest, dtype: torch_dtype, rope_parameters: { ...rope_scaling, rope_theta } };
    expect(parseModelConfig(v5, "config.json")).toEqual({ ...parseModelConfig(llama32, "config.json"), raw: v5 });
  });

  it("4.x rope_scaling may spell rope_type as type", () => {
    const { rope_type: _, ...scaling } = llama32.rope_scaling;
    const config = parseModelConfig({ ...llama32, rope_scaling: { ...scaling, type: "llama3" } }, "config.json");
    expect(config.rope?.type).toBe("llama3");
  });

  it("openai-community/gpt2: tied by default, n_inner = 4 * n_embd", () => {
    expect(parseModelConfig(gpt2Hub, "config.json")).toMatchObject({
      hiddenSize: 768,
      headDim: 64,
      intermediateSize: 3072,
      maxPositions: 1024,
      tieWordEmbeddings: true,
      dtype: "float32",
    });
  });

  it("Mistral-7B-v0.1 records its sliding window", () => {
    expect(parseModelConfig(mistral, "config.json")).toMatchObject({
      modelType: "mistral",
      headDim: 128,
      family: { slidingWindow: 4096, attentionBias: { qkv: false, output: false } },
      tieWordEmbeddings: false,
    });
  });

  it("Qwen2.5-0.5B: biased q/k/v, sliding window off", () => {
    expect(parseModelConfig(qwen25, "config.json")).toMatchObject({
      headDim: 64,
      family: { attentionBias: { qkv: true, output: false }, slidingWindow: null },
      rope: { type: "default", theta: 1e6 },
    });
  });
});

describe("config errors name the file, the field and what was expected", () => {
  it("unknown model_type lists the supported ones", () => {
    const err = configError({ ...smolLM2, model_type: "bert" });
    expect(err.message).toBe(
      'model/config.json, field "model_type": model_type "bert" is not supported; supported: gemma2, gemma3_text, gpt2, gpt_neox, llama, mistral, olmo2, phi3, qwen2, qwen3, smollm3',
    );
  });

  it("missing model_type", () => {
    const { model_type: _, ...rest } = smolLM2;
    expect(configError(rest).place).toEqual({ file: "model/config.json", field: "model_type" });
  });

  it("missing required field", () => {
    const { hidden_size: _, ...rest } = smolLM2;
    expect(configError(rest).message).toBe('model/config.json, field "hidden_size": missing required field');
  });

  it("wrong type", () => {
    const err = configError({ ...gpt2Hub, n_embd: "768" });
    expect(err.place.field).toBe("n_embd");
    expect(err.message).toMatch(/"768" is invalid: .*expected number/);
  });

  it("unsupported rope type", () => {
    const err = configError({ ...smolLM2, rope_scaling: { rope_type: "yarn", factor: 4 } });
    expect(err.message).toBe(
      'model/config.json, field "rope_scaling.rope_type": rope type "yarn" is not supported; supported: default, linear, llama3',
    );
  });

  it("llama3 rope without its factors", () => {
    const { factor: _, ...scaling } = llama32.rope_scaling;
    expect(configError({ ...llama32, rope_scaling: scaling }).place.field).toBe("rope_scaling.factor");
  });

  it("unsupported activation", () => {
    const err = configError({ ...gpt2Hub, activation_function: "gelu_fast" });
    expect(err.message).toMatch(/field "activation_function": "gelu_fast" is not supported; supported: gelu_new, gelu,/);
  });

  it.each(["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"])("gpt2 %s is unsupported", (field) => {
    expect(configError({ ...gpt2Hub, [field]: true }).place.field).toBe(field);
  });

  it("heads that do not divide", () => {
    expect(configError({ ...smolLM2, num_key_value_heads: 4 }).message).toMatch(
      /num_attention_heads 9 is not a multiple of num_key_value_heads 4/,
    );
    expect(configError({ ...gpt2Hub, n_head: 7 }).message).toMatch(/n_embd 768 is not divisible by n_head 7/);
  });

  it("an active Qwen2 sliding window shorter than the context", () => {
    const err = configError({ ...qwen25, use_sliding_window: true, sliding_window: 4096 });
    expect(err.place.field).toBe("use_sliding_window");
    expect(err.message).toMatch(/window 4096 < max_position_embeddings 32768/);
  });

  it("not an object", () => {
    expect(configError([1]).message).toBe("model/config.json: expected a JSON object");
  });

  describe("on disk", () => {
    let dir: string;
    beforeAll(async () => {
      dir = await fsp.mkdtemp(join(tmpdir(), "softprompt-config-"));
    });
    afterAll(async () => {
      await fsp.rm(dir, { recursive: true, force: true });
    });

    it("a missing config.json is a file error", async () => {
      await expect(readModelConfig(dir)).rejects.toMatchObject({ code: "file", place: { file: join(dir, "config.json") } });
    });

    it("bad JSON is a config error", async () => {
      await fsp.writeFile(join(dir, "config.json"), "{ nope");
      await expect(readModelConfig(dir)).rejects.toMatchObject({ code: "config", message: /not valid JSON/ });
    });
  });
});
