// Adding an architecture takes one new file and one registration call. The toy family below is what
// that file would hold (config schema, tensor spec, graph builder), built from the shared blocks and
// registered from this test with no source file touched; it is then saved as a Hugging Face folder,
// loaded with loadModel, run forward and differentiated like the built-in families.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import type { Value } from "../../src/graph/ir.js";
import * as o from "../../src/graph/ops.js";
import * as nn from "../../src/graph/nn.js";
import { grad } from "../../src/graph/autodiff.js";
import { activationName, commonConfig, commonFields, count, eps, validateConfig } from "../../src/models/config-fields.js";
import { type ModelConfig, parseModelConfig } from "../../src/models/config.js";
import type { CausalLM, ForwardArgs, ForwardResult, KV, Weights } from "../../src/models/causal-lm.js";
import { type Linear, gatedMlp, hookedLinear, mergeHeads, rmsNorm, runBlocks, splitHeads, withPast } from "../../src/models/blocks.js";
import { type Architecture, type TensorSpec, registerArchitecture } from "../../src/models/registry.js";
import { loadModel } from "../../src/models/index.js";
import { arangePositions, attentionPattern, idsTensor } from "../../src/models/inputs.js";
import { checkPositions } from "../../src/infer/layout.js";
import { writeSafetensors, type TensorToWrite } from "../../src/formats/safetensors.js";
import { Program } from "../../src/runtime/session.js";
import { Rng } from "../../src/util/rng.js";
import { SoftpromptError } from "../../src/util/errors.js";
import { modelDir } from "../helpers/golden.js";

// ---------------------------------------------------------------------------------------------------
// The toy family: pre-norm blocks of fused-q|k|v attention over learned positions and a gated MLP.

const toySchema = z.looseObject({
  ...commonFields,
  width: count,
  depth: count,
  heads: count,
  ffn: count,
  context: count,
  act: activationName.default("silu"),
  norm_eps: eps.default(1e-5),
  qkv_bias: z.boolean().default(false),
});

/** A field only this family has: it stays out of the shared ModelConfig. */
interface ToyFields {
  qkvBias: boolean;
}

function parseToyConfig(raw: Record<string, unknown>, modelType: string, file: string): ModelConfig<ToyFields> {
  const c = validateConfig(toySchema, raw, file);
  return {
    modelType,
    hiddenSize: c.width,
    numLayers: c.depth,
    numHeads: c.heads,
    numKvHeads: c.heads,
    headDim: c.width / c.heads,
    intermediateSize: c.ffn,
    vocabSize: c.vocab_size,
    maxPositions: c.context,
    normEps: c.norm_eps,
    activation: c.act,
    tieWordEmbeddings: true,
    rope: null,
    ...commonConfig(c),
    family: { qkvBias: c.qkv_bias },
    raw,
  };
}

function toyTensorSpec(c: ModelConfig<ToyFields>): TensorSpec[] {
  const d = c.hiddenSize;
  const specs: TensorSpec[] = [
    { name: "embed.weight", shape: [c.vocabSize, d] },
    { name: "pos.weight", shape: [c.maxPositions, d] },
  ];
  for (let i = 0; i < c.numLayers; i++) {
    const l = `layers.${i}`;
    specs.push(
      { name: `${l}.norm_1.weight`, shape: [d] },
      { name: `${l}.attn.qkv.weight`, shape: [3 * d, d] },
      ...(c.family.qkvBias ? [{ name: `${l}.attn.qkv.bias`, shape: [3 * d] }] : []),
      { name: `${l}.attn.out.weight`, shape: [d, d] },
      { name: `${l}.norm_2.weight`, shape: [d] },
      { name: `${l}.mlp.gate_proj.weight`, shape: [c.intermediateSize, d] },
      { name: `${l}.mlp.up_proj.weight`, shape: [c.intermediateSize, d] },
      { name: `${l}.mlp.down_proj.weight`, shape: [d, c.intermediateSize] },
    );
  }
  specs.push({ name: "final_norm.weight", shape: [d] });
  return specs;
}

function toy(config: ModelConfig<ToyFields>, weights: Weights): CausalLM {
  const { hiddenSize: d, numHeads: heads, headDim: hd, normEps: eps } = config;
  const w = (name: string) => weights.get(name);

  function block(i: number, x: Value, linear: Linear, mask: nn.AttentionMask, past: KV | undefined) {
    const l = `layers.${i}`;
    const qkv = linear(`${l}.attn.qkv`, rmsNorm(weights, `${l}.norm_1`, x, eps), config.family.qkvBias); // [B, T, 3d]
    const q = splitHeads(o.slice(qkv, -1, 0, d), heads, hd);
    const kv = withPast(past, splitHeads(o.slice(qkv, -1, d, 2 * d), heads, hd), splitHeads(o.slice(qkv, -1, 2 * d, 3 * d), heads, hd));
    x = o.add(x, linear(`${l}.attn.out`, mergeHeads(nn.attention(q, kv.key, kv.value, mask, 1 / Math.sqrt(hd)), heads, hd), false));
    x = o.add(x, gatedMlp(linear, `${l}.mlp`, rmsNorm(weights, `${l}.norm_2`, x, eps), config.activation, false));
    return { x, kv };
  }

  return {
    config,
    weights,
    embeddingName: "embed.weight",
    embed: (ids) => o.gather(w("embed.weight"), ids, 0),
    forward({ inputsEmbeds, positions, allowed, past, hooks }: ForwardArgs): ForwardResult {
      const x = o.add(inputsEmbeds, o.gather(w("pos.weight"), positions, 0));
      const mask = new nn.AttentionMask(allowed);
      const linear = hookedLinear(weights, "out_in", hooks);
      return runBlocks(x, config.numLayers, past, (i, h, kv) => block(i, h, linear, mask, kv), (h) => rmsNorm(weights, "final_norm", h, eps));
    },
    lmHead: (h) => o.gemm(h, w("embed.weight"), { transB: true }),
  };
}

const toyArchitecture: Architecture<ToyFields> = {
  modelTypes: ["toy-lm"],
  positions: "learned",
  optionalPrefix: "toy.",
  ignoredTensors: [/^layers\.\d+\.attn\.causal_mask$/],
  parseConfig: parseToyConfig,
  tensorSpec: toyTensorSpec,
  build: toy,
};
registerArchitecture(toyArchitecture); // the one registration line

// ---------------------------------------------------------------------------------------------------

const toyConfigJson = {
  model_type: "toy-lm",
  width: 16,
  depth: 2,
  heads: 2,
  ffn: 24,
  context: 32,
  vocab_size: 512, // the golden byte-level BPE tokenizer's
  qkv_bias: true,
  eos_token_id: 511,
};

/** Seeded weights for every tensor of the spec, under the stored names (`toy.` prefix), plus a mask buffer. */
function toyTensors(spec: TensorSpec[], skip?: string): Record<string, TensorToWrite> {
  const rng = new Rng(7);
  const tensors: Record<string, TensorToWrite> = {};
  for (const { name, shape } of spec) {
    const n = shape.reduce((a, b) => a * b, 1);
    const norm = name.includes("norm");
    const data = Float32Array.from({ length: n }, () => (norm ? 1 + 0.1 * rng.normal() : 0.3 * rng.normal()));
    if (name !== skip) tensors[`toy.${name}`] = { dtype: "F32", shape, data };
  }
  tensors["toy.layers.0.attn.causal_mask"] = { dtype: "U8", shape: [32, 32], data: new Uint8Array(32 * 32) };
  return tensors;
}

let root: string;
let dirCount = 0;
async function toyFolder(skip?: string): Promise<string> {
  const dir = join(root, `toy-${dirCount++}`);
  await fsp.mkdir(dir);
  await fsp.writeFile(join(dir, "config.json"), JSON.stringify(toyConfigJson));
  const spec = toyTensorSpec(parseToyConfig(toyConfigJson, "toy-lm", "config.json"));
  await writeSafetensors(join(dir, "model.safetensors"), toyTensors(spec, skip), { format: "pt" });
  for (const file of ["tokenizer.json", "tokenizer_config.json"]) await fsp.copyFile(join(modelDir("gpt2"), file), join(dir, file));
  return dir;
}

beforeAll(async () => {
  root = await fsp.mkdtemp(join(tmpdir(), "softprompt-toy-"));
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe("a toy architecture registered from a test", () => {
  it("loads from a folder with loadModel: its own config fields, its spec's tensors, the prefix dropped, the buffer skipped", async () => {
    const model = await loadModel(await toyFolder());
    expect(model.config).toMatchObject({ modelType: "toy-lm", hiddenSize: 16, numLayers: 2, headDim: 8, family: { qkvBias: true } });
    const specNames = toyTensorSpec(model.config as ModelConfig<ToyFields>).map((s) => s.name);
    expect(model.lm.weights.names().sort()).toEqual(specNames.sort());
    expect(model.tokenizer.vocabSize).toBe(512);
  });

  it("runs forward, and the gradient of its loss matches finite differences", async () => {
    const { lm, tokenizer } = await loadModel(await toyFolder());
    const text = tokenizer.encode("a toy model reads this line");
    const [B, T] = [1, text.length];
    const ids = o.input("input_ids", "int64", [B, T]);
    const targets = o.input("targets", "int64", [B * T]);
    const { hidden, hiddenStates } = lm.forward({
      inputsEmbeds: lm.embed(ids),
      positions: o.input("position_ids", "int64", [B, T]),
      allowed: o.input("allowed", "bool", [B, 1, T, T]),
    });
    expect(hiddenStates).toHaveLength(3); // embeddings, block 0's output, the final norm's
    const loss = nn.crossEntropy(lm.lmHead(o.reshape(hidden, [-1, 16])), targets);
    const name = "layers.1.mlp.up_proj.weight";
    const [dW] = grad(loss, [lm.weights.get(name)]);
    const withGrad = await Program.compile({ loss, dW });
    const lossOnly = await Program.compile({ loss });

    const next = [...text.slice(1), -100]; // position t predicts token t + 1; the last predicts nothing
    const feeds = {
      ...lm.weights.feeds(),
      input_ids: idsTensor([text]),
      targets: { data: BigInt64Array.from(next, BigInt), dims: [B * T] },
      position_ids: arangePositions(B, T),
      allowed: attentionPattern([Array<number>(T).fill(1)], T),
    };
    const out = await withGrad.run(feeds);
    const value = (out.loss.data as Float32Array)[0];
    expect(Number.isFinite(value) && value > 0).toBe(true);

    // Directional derivative along a random direction u: (L(W + hu) - L(W - hu)) / 2h against <dW, u>.
    const weight = lm.weights.tensor(name);
    const rng = new Rng(3);
    const u = Float32Array.from(weight.data, () => rng.normal());
    const h = 1e-2;
    const lossAt = async (sign: number) => {
      const moved = weight.data.map((v, i) => v + sign * h * u[i]);
      return (await lossOnly.run({ ...feeds, [name]: { data: moved, dims: weight.shape } })).loss.data[0] as number;
    };
    const numeric = ((await lossAt(1)) - (await lossAt(-1))) / (2 * h);
    const analytic = (out.dW.data as Float32Array).reduce((sum, g, i) => sum + g * u[i], 0);
    expect(Math.abs(analytic)).toBeGreaterThan(1e-3);
    expect(Math.abs(numeric - analytic)).toBeLessThan(2e-3 * Math.abs(analytic));
  });

  it("its learned positions end at its context: checkPositions reads the position kind from the registry", async () => {
    const { lm } = await loadModel(await toyFolder());
    expect(() => checkPositions(lm, 31, "maxNewTokens")).not.toThrow();
    expect(() => checkPositions(lm, 32, "maxNewTokens")).toThrow(/would reach position 32, but the model has 32 positions/);
  });

  it("the forward hook sees its projections", async () => {
    const { lm } = await loadModel(await toyFolder());
    const seen: string[] = [];
    lm.forward({
      inputsEmbeds: o.input("embeds", "float32", [1, 2, 16]),
      positions: o.input("positions", "int64", [1, 2]),
      allowed: o.input("allowed", "bool", [1, 1, 2, 2]),
      hooks: { linear: (module, _x, y) => (seen.push(module), y) },
    });
    const perLayer = ["attn.qkv", "attn.out", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];
    expect(seen).toEqual([0, 1].flatMap((i) => perLayer.map((m) => `layers.${i}.${m}`)));
  });

  it("the loader checks a checkpoint against its spec", async () => {
    const dir = await toyFolder("layers.1.attn.qkv.bias");
    await expect(loadModel(dir)).rejects.toMatchObject({
      code: "weights",
      place: { tensor: "layers.1.attn.qkv.bias" },
      message: /missing tensor, expected shape \[48\] for a toy-lm model with 2 layers/,
    });
  });

  it("registering a model type twice is an error naming it, and registers none of the entry's types", () => {
    const again = () => registerArchitecture({ ...toyArchitecture, modelTypes: ["toy-lm-2", "toy-lm"] });
    expect(again).toThrow(SoftpromptError);
    expect(again).toThrow('model_type "toy-lm" is registered twice');
    expect(() => parseModelConfig({ ...toyConfigJson, model_type: "toy-lm-2" }, "config.json")).toThrow(/not supported/);
  });

  it("an unknown model_type lists every registered one, the toy included", () => {
    expect(() => parseModelConfig({ model_type: "bert" }, "model/config.json")).toThrow(
      'model/config.json, field "model_type": model_type "bert" is not supported; supported: gemma2, gemma3_text, gpt2, gpt_neox, llama, mistral, olmo2, phi3, qwen2, qwen3, smollm3, toy-lm',
    );
  });
});
