import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { modelInfo } from "../src/models/info.js";
import { writeSafetensors } from "../src/formats/safetensors.js";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const golden = resolve(repoRoot, "../shared/golden");

// The golden models: vocab 512, hidden 64, 2 layers, 4 heads; llama and qwen2 have 2 KV heads (k/v out 32) and MLP 128.
const V = 512;
const d = 64;
const L = 2;
const gpt2Layer = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d);
const gpt2Params = V * d + 128 * d + L * gpt2Layer + 2 * d;
const llamaLayer = d + d * d + 2 * (32 * d) + d * d + d + 3 * (128 * d);
const llamaParams = V * d + L * llamaLayer + d + V * d; // untied lm_head
const qwen2Params = V * d + L * (llamaLayer + d + 2 * 32) + d; // q/k/v biases, tied

describe.skipIf(!existsSync(golden))("golden model folders", () => {
  it("gpt2", async () => {
    const dir = join(golden, "gpt2/model");
    const info = await modelInfo(dir);
    expect(info).toEqual({
      architecture: "GPT2LMHeadModel",
      modelType: "gpt2",
      parameters: gpt2Params,
      dtype: "F32",
      vocabSize: 512,
      contextLength: 128,
      hiddenSize: 64,
      layers: 2,
      heads: 4,
      kvHeads: 4,
      files: await Promise.all(
        (await fsp.readdir(dir)).sort().map(async (name) => ({ name, bytes: (await fsp.stat(join(dir, name))).size })),
      ),
    });
    // Float32 weights: the parameter count fixes the weight file's data size.
    const weights = info.files.find((f) => f.name === "model.safetensors");
    expect(weights!.bytes).toBeGreaterThan(4 * gpt2Params);
  });

  it.each([
    ["llama", "LlamaForCausalLM", llamaParams],
    ["qwen2", "Qwen2ForCausalLM", qwen2Params],
  ])("%s", async (arch, architecture, parameters) => {
    expect(await modelInfo(join(golden, arch, "model"))).toMatchObject({ architecture, parameters, kvHeads: 2, dtype: "F32" });
  });
});

describe("folders written here", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(join(tmpdir(), "softprompt-info-"));
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it("counts tied embeddings once, skips buffers, and reports the majority dtype", async () => {
    const config = { model_type: "gpt2", n_embd: 4, n_layer: 1, n_head: 1, n_positions: 3, vocab_size: 5 };
    await fsp.writeFile(join(dir, "config.json"), JSON.stringify(config));
    const f32 = (...shape: number[]) => ({ dtype: "F32" as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    const bf16 = (...shape: number[]) => ({ dtype: "BF16" as const, shape, data: new Uint8Array(2 * shape.reduce((a, b) => a * b, 1)) });
    await writeSafetensors(join(dir, "model.safetensors"), {
      "wte.weight": bf16(5, 4),
      "wpe.weight": bf16(3, 4),
      "lm_head.weight": bf16(5, 4), // the tied copy: not counted
      "h.0.attn.bias": { dtype: "U8", shape: [1, 1, 3, 3], data: new Uint8Array(9) }, // causal-mask buffer
      "h.0.ln_1.weight": f32(4),
      "h.0.ln_1.bias": f32(4),
      "h.0.attn.c_attn.weight": bf16(4, 12),
      "h.0.attn.c_attn.bias": f32(12),
      "h.0.attn.c_proj.weight": bf16(4, 4),
      "h.0.attn.c_proj.bias": f32(4),
      "h.0.ln_2.weight": f32(4),
      "h.0.ln_2.bias": f32(4),
      "h.0.mlp.c_fc.weight": bf16(4, 16),
      "h.0.mlp.c_fc.bias": f32(16),
      "h.0.mlp.c_proj.weight": bf16(16, 4),
      "h.0.mlp.c_proj.bias": f32(4),
      "ln_f.weight": f32(4),
      "ln_f.bias": f32(4),
    });
    const info = await modelInfo(dir);
    expect(info.parameters).toBe(20 + 12 + 8 + 48 + 12 + 16 + 4 + 8 + 64 + 16 + 64 + 4 + 8);
    expect(info.dtype).toBe("BF16");
    expect(info.architecture).toBe("gpt2");
    expect(info.files.map((f) => f.name)).toEqual(["config.json", "model.safetensors"]);
  });
});
