import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { existsSync, promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadWeights, tensorSpec, canonicalName } from "../src/models/checkpoint.js";
import { openCheckpoint } from "../src/formats/checkpoint.js";
import { parseModelConfig, readModelConfig, type ModelConfig } from "../src/models/config.js";
import { SafetensorsFile, float32ToBfloat16, writeSafetensors, type TensorToWrite } from "../src/formats/safetensors.js";
import { SoftpromptError } from "../src/util/errors.js";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const golden = resolve(repoRoot, "../shared/golden");

const tinyLlama = parseModelConfig(
  {
    model_type: "llama",
    hidden_size: 8,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    intermediate_size: 12,
    vocab_size: 10,
    max_position_embeddings: 16,
  },
  "tiny-llama/config.json",
);
const tinyGpt2 = parseModelConfig(
  { model_type: "gpt2", n_embd: 8, n_layer: 1, n_head: 2, n_positions: 6, vocab_size: 10 },
  "tiny-gpt2/config.json",
);

/** Deterministic float32 weights for every tensor the config needs. */
function fakeWeights(config: ModelConfig): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  tensorSpec(config).forEach(({ name, shape }, t) => {
    const n = shape.reduce((a, b) => a * b, 1);
    out[name] = Float32Array.from({ length: n }, (_, i) => ((t * 31 + i * 7) % 19) / 8 - 1);
  });
  return out;
}

function asF32(weights: Record<string, Float32Array>, config: ModelConfig): Record<string, TensorToWrite> {
  const shapes = new Map(tensorSpec(config).map((s) => [s.name, s.shape]));
  return Object.fromEntries(
    Object.entries(weights).map(([name, data]) => [name, { dtype: "F32", shape: shapes.get(name) ?? [data.length], data }]),
  );
}

let root: string;
let count = 0;
async function folder(tensors: Record<string, TensorToWrite>): Promise<string> {
  const dir = join(root, `model-${count++}`);
  await fsp.mkdir(dir);
  await writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
  return dir;
}

beforeAll(async () => {
  root = await fsp.mkdtemp(join(tmpdir(), "softprompt-checkpoint-"));
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

async function weightsError(dir: string, config: ModelConfig): Promise<SoftpromptError> {
  const reads = vi.spyOn(SafetensorsFile.prototype, "readFloat32");
  const err = await loadWeights(dir, config).then(
    () => {
      throw new Error("expected loadWeights to fail");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SoftpromptError);
  expect(reads).not.toHaveBeenCalled(); // checked before reading any data
  return err as SoftpromptError;
}

describe("tensorSpec", () => {
  it("gpt2 canonical names and Conv1D [in, out] shapes, held transposed", () => {
    const spec = tensorSpec(tinyGpt2);
    expect(spec.slice(0, 2)).toEqual([
      { name: "wte.weight", shape: [10, 8] },
      { name: "wpe.weight", shape: [6, 8] },
    ]);
    expect(spec).toContainEqual({ name: "h.0.attn.c_attn.weight", shape: [8, 24], heldTransposed: true });
    expect(spec).toContainEqual({ name: "h.0.attn.c_proj.weight", shape: [8, 8], heldTransposed: true });
    expect(spec).toContainEqual({ name: "h.0.mlp.c_fc.weight", shape: [8, 32], heldTransposed: true });
    expect(spec).toContainEqual({ name: "h.0.mlp.c_proj.weight", shape: [32, 8], heldTransposed: true });
    expect(spec.filter((t) => t.heldTransposed)).toHaveLength(4);
    expect(spec.at(-1)).toEqual({ name: "ln_f.bias", shape: [8] });
    expect(spec).toHaveLength(2 + 12 + 2);
    const untied = tensorSpec({ ...tinyGpt2, tieWordEmbeddings: false });
    expect(untied.at(-1)).toEqual({ name: "lm_head.weight", shape: [10, 8] });
  });

  it("llama family: [out, in] projections, grouped k/v, lm_head only when untied", () => {
    const spec = tensorSpec(tinyLlama);
    expect(spec).toContainEqual({ name: "model.layers.1.self_attn.k_proj.weight", shape: [4, 8] });
    expect(spec).toContainEqual({ name: "model.layers.1.self_attn.o_proj.weight", shape: [8, 8] });
    expect(spec).toContainEqual({ name: "model.layers.0.mlp.down_proj.weight", shape: [8, 12] });
    expect(spec.at(-1)).toEqual({ name: "lm_head.weight", shape: [10, 8] });
    expect(spec.some((s) => s.name.endsWith(".bias"))).toBe(false);
    const tied = tensorSpec({ ...tinyLlama, tieWordEmbeddings: true });
    expect(tied.map((s) => s.name)).not.toContain("lm_head.weight");
  });

  it.skipIf(!existsSync(golden)).each(["gpt2", "llama", "qwen2"])("matches the golden %s checkpoint exactly", async (arch) => {
    const dir = join(golden, arch, "model");
    const config = await readModelConfig(dir);
    const file = await SafetensorsFile.open(join(dir, "model.safetensors"));
    const stored = file.tensorNames().map((n) => ({ name: canonicalName(config, n), shape: file.info(n).shape }));
    await file.close();
    const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : 1);
    expect(tensorSpec(config).map(({ name, shape }) => ({ name, shape })).sort(byName)).toEqual(stored.sort(byName));
  });
});

/** [rows, cols] → [cols, rows], written plainly (the loader's is tiled). */
function transposed(data: Float32Array, [rows, cols]: number[]): Float32Array {
  return Float32Array.from({ length: data.length }, (_, i) => data[(i % rows) * cols + Math.floor(i / rows)]);
}

/** The weights as the model holds them: stored ones, with the heldTransposed weights transposed. */
function held(config: ModelConfig, stored: Record<string, Float32Array>): Record<string, Float32Array> {
  const specs = new Map(tensorSpec(config).map((s) => [s.name, s]));
  return Object.fromEntries(Object.entries(stored).map(([name, data]) => {
    const spec = specs.get(name)!;
    return [name, spec.heldTransposed ? transposed(data, spec.shape) : data];
  }));
}

describe.skipIf(!existsSync(golden))("loadWeights on the golden models", () => {
  it.each(["gpt2", "llama", "qwen2"])("%s: the stored tensors, GPT-2's Conv1D weights transposed to [out, in]", async (arch) => {
    const dir = join(golden, arch, "model");
    const config = await readModelConfig(dir);
    const weights = await loadWeights(dir, config);
    expect([...weights.keys()]).toEqual(tensorSpec(config).map((s) => s.name));
    const file = await SafetensorsFile.open(join(dir, "model.safetensors"));
    try {
      const stored: Record<string, Float32Array> = {};
      for (const name of weights.keys()) stored[name] = await file.readFloat32(arch === "gpt2" ? `transformer.${name}` : name);
      expect(Object.fromEntries(weights)).toEqual(held(config, stored));
      if (arch === "gpt2") expect(weights.get("h.0.attn.c_attn.weight")).not.toEqual(stored["h.0.attn.c_attn.weight"]);
    } finally {
      await file.close();
    }
  });
});

describe("loadWeights on folders written here", () => {
  it("gpt2 without the transformer. prefix, with mask buffers and a tied lm_head copy", async () => {
    const weights = fakeWeights(tinyGpt2);
    const dir = await folder({
      ...asF32(weights, tinyGpt2),
      "h.0.attn.bias": { dtype: "U8", shape: [1, 1, 6, 6], data: new Uint8Array(36) },
      "h.0.attn.masked_bias": { dtype: "F32", shape: [], data: Float32Array.from([-1e4]) },
      "lm_head.weight": { dtype: "F32", shape: [10, 8], data: weights["wte.weight"] },
    });
    const loaded = await loadWeights(dir, tinyGpt2);
    expect(Object.fromEntries(loaded)).toEqual(held(tinyGpt2, weights));
  });

  it("gpt2 with the prefix gives the same canonical names", async () => {
    const weights = fakeWeights(tinyGpt2);
    const prefixed = Object.fromEntries(Object.entries(asF32(weights, tinyGpt2)).map(([n, t]) => [`transformer.${n}`, t]));
    const loaded = await loadWeights(await folder(prefixed), tinyGpt2);
    expect(Object.fromEntries(loaded)).toEqual(held(tinyGpt2, weights));
  });

  it("converts bfloat16 checkpoints to float32", async () => {
    const weights = fakeWeights(tinyLlama);
    const shapes = new Map(tensorSpec(tinyLlama).map((s) => [s.name, s.shape]));
    const bf16 = Object.fromEntries(
      Object.entries(weights).map(([name, data]) => [
        name,
        { dtype: "BF16" as const, shape: shapes.get(name) as number[], data: new Uint8Array(float32ToBfloat16(data).buffer) },
      ]),
    );
    const loaded = await loadWeights(await folder(bf16), tinyLlama);
    // The fake values are multiples of 1/8 in [-1, 1.25]: exact in bfloat16.
    expect(Object.fromEntries(loaded)).toEqual(weights);
  });

  it("a missing tensor is named, with its expected shape, before any data is read", async () => {
    const { "model.layers.1.post_attention_layernorm.weight": _, ...rest } = fakeWeights(tinyLlama);
    const dir = await folder(asF32(rest, tinyLlama));
    const err = await weightsError(dir, tinyLlama);
    expect(err.code).toBe("weights");
    expect(err.place).toEqual({ file: join(dir, "model.safetensors"), tensor: "model.layers.1.post_attention_layernorm.weight" });
    expect(err.message).toMatch(/missing tensor, expected shape \[8\] for a llama model with 2 layers$/);
  });

  it("a wrong shape names the tensor, the shape found and the shape expected", async () => {
    const tensors = asF32(fakeWeights(tinyLlama), tinyLlama);
    tensors["model.layers.0.self_attn.k_proj.weight"] = { dtype: "F32", shape: [8, 8], data: new Float32Array(64) };
    const err = await weightsError(await folder(tensors), tinyLlama);
    expect(err.place.tensor).toBe("model.layers.0.self_attn.k_proj.weight");
    expect(err.message).toMatch(/shape \[8, 8\] does not fit the config: expected \[4, 8\]/);
  });

  it("an integer tensor where weights belong", async () => {
    const tensors = asF32(fakeWeights(tinyLlama), tinyLlama);
    tensors["model.norm.weight"] = { dtype: "I32", shape: [8], data: new Int32Array(8) };
    expect((await weightsError(await folder(tensors), tinyLlama)).message).toMatch(/dtype I32 is not a float type/);
  });

  it("tensors the config does not know (e.g. more layers) are an error", async () => {
    const oneLayer = { ...tinyLlama, numLayers: 1 };
    const err = await weightsError(await folder(asF32(fakeWeights(tinyLlama), tinyLlama)), oneLayer);
    expect(err.message).toMatch(/9 tensor\(s\) not used by a llama model with 1 layers: model\.layers\.1\./);
  });

  it("a folder without safetensors weights", async () => {
    const dir = join(root, "legacy");
    await fsp.mkdir(dir);
    await fsp.writeFile(join(dir, "pytorch_model.bin"), "");
    await expect(loadWeights(dir, tinyLlama)).rejects.toMatchObject({
      code: "file",
      message: /no model\.safetensors or model\.safetensors\.index\.json .*pytorch_model\.bin is not read/,
    });
  });
});

describe("sharded checkpoints", () => {
  async function sharded(mutateIndex?: (map: Record<string, string>) => void): Promise<string> {
    const tensors = asF32(fakeWeights(tinyLlama), tinyLlama);
    const names = Object.keys(tensors);
    const shards = [names.slice(0, 7), names.slice(7)];
    const dir = join(root, `sharded-${count++}`);
    await fsp.mkdir(dir);
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(join(dir, file), Object.fromEntries(shard.map((n) => [n, tensors[n]])));
      for (const n of shard) weightMap[n] = file;
    }
    mutateIndex?.(weightMap);
    await fsp.writeFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 1 }, weight_map: weightMap }));
    return dir;
  }

  it("loads every shard through the index", async () => {
    const loaded = await loadWeights(await sharded(), tinyLlama);
    expect(Object.fromEntries(loaded)).toEqual(fakeWeights(tinyLlama));
  });

  it("a shard listed in the index but absent", async () => {
    const dir = await sharded();
    await fsp.rm(join(dir, "model-00002-of-00002.safetensors"));
    await expect(openCheckpoint(dir)).rejects.toThrow(/index\.json: shards listed in the index are missing: model-00002-of-00002\.safetensors/);
  });

  it("an index that puts a tensor in the wrong shard", async () => {
    const dir = await sharded((map) => {
      map["model.norm.weight"] = "model-00001-of-00002.safetensors";
    });
    await expect(openCheckpoint(dir)).rejects.toMatchObject({
      code: "file",
      place: { tensor: "model.norm.weight" },
      message: /the index places this tensor in model-00001-of-00002\.safetensors, but that shard does not hold it/,
    });
  });

  it("an index that points outside the folder", async () => {
    const dir = await sharded((map) => {
      map["model.norm.weight"] = "../model.safetensors";
    });
    await expect(openCheckpoint(dir)).rejects.toThrow(/shard "\.\.\/model\.safetensors" must be a file name in the same folder/);
  });

  it("a malformed index", async () => {
    const dir = await sharded();
    await fsp.writeFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: [1] }));
    await expect(openCheckpoint(dir)).rejects.toMatchObject({ code: "file", place: { field: "weight_map" } });
  });
});
