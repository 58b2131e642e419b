// Prefix tuning against real PEFT 0.21 on the golden models (grouped-query attention on llama and qwen2):
// loss, logits and the gradient of every trained tensor, with and without prefix_projection; the
// per-layer keys/values and the saved table; PEFT-written adapters reproduce PEFT's logits.
import { describe, expect, it } from "vitest";
import * as o from "../../src/graph/ops.js";
import { grad } from "../../src/graph/autodiff.js";
import { Program } from "../../src/runtime/session.js";
import { lossFeeds, lossGraph } from "../../src/objective/lm.js";
import { paramInputs } from "../../src/eval/loss.js";
import { loadAdapter } from "../../src/peft/adapter.js";
import { prefixTuning } from "../../src/peft/prefix-tuning/index.js";
import { prefixTuningConfigSchema } from "../../src/peft/prefix-tuning/config.js";
import type { Adapter } from "../../src/peft/adapter.js";
import type { Params } from "../../src/peft/method.js";
import type { CausalLM } from "../../src/models/causal-lm.js";
import { ARCHS, type Arch, adapterDir, goldenIndex, maxAbsDiff, readCase, loadGoldenModel } from "../helpers/golden.js";

const CASES = ["prefix_tuning", "prefix_tuning_proj"] as const;
type Golden = Awaited<ReturnType<typeof readCase>>;

const PARAM = "param.prompt_encoder.";

/** The case's trained tensors by our names (PEFT's prompt encoder's, less the prefix). */
function caseParams(golden: Golden): Params {
  const params: Params = new Map();
  for (const [name, t] of golden) if (name.startsWith(PARAM)) params.set(name.slice(PARAM.length), { shape: t.shape, data: t.data as Float32Array });
  return params;
}

function caseBatch(golden: Golden) {
  const [B, T] = golden.get("input_ids")!.shape;
  return { inputIds: golden.get("input_ids")!.data, attentionMask: golden.get("attention_mask")!.data, labels: golden.get("labels")!.data, batchSize: B, seqLen: T };
}

/** Loss, logits [B, T, V] and d loss / d each named param, with PEFT's positions. */
async function run(lm: CausalLM, adapter: Pick<Adapter, "config" | "params">, golden: Golden, withGrads: boolean) {
  const inputs = paramInputs(adapter.params);
  const graph = lossGraph(lm, prefixTuning.adapt(adapter.config as never, inputs, lm));
  const names = withGrads ? [...inputs.keys()] : [];
  const grads = withGrads ? grad(graph.loss, names.map((n) => inputs.get(n)!)) : [];
  const logits = lm.lmHead(o.reshape(graph.hidden, [-1, lm.config.hiddenSize]));
  const program = await Program.compile({ loss: graph.loss, logits, ...Object.fromEntries(names.map((n, i) => [`grad.${n}`, grads[i]])) });
  const feeds = Object.fromEntries([...adapter.params].map(([n, p]) => [n, { data: p.data, dims: p.shape }]));
  return program.run({ ...lm.weights.feeds(), ...feeds, ...lossFeeds(caseBatch(golden), graph, "peft") });
}

function expectClose(got: Float32Array, want: Float32Array, atol: number, rtol: number): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) - rtol * Math.abs(want[i]));
  expect(worst).toBeLessThanOrEqual(atol);
}

function expectLogits(got: Float32Array, golden: Golden): void {
  const [, T] = golden.get("input_ids")!.shape;
  const mask = golden.get("attention_mask")!.data as number[];
  const want = golden.get("logits")!;
  expect(maxAbsDiff(got, want.data as Float32Array, want.shape, (r, t) => mask[r * T + t] === 1)).toBeLessThan(1e-4);
}

describe.each(ARCHS)("%s prefix tuning matches PEFT", (arch: Arch) => {
  it.each(CASES)("%s: loss, logits, the gradient of every trained tensor, the keys/values and the saved table", async (name) => {
    const lm = await loadGoldenModel(arch);
    const golden = await readCase(arch, name);
    const config = prefixTuningConfigSchema.parse(goldenIndex(arch).cases[name].adapter_config);
    const params = caseParams(golden);
    expect(params.size).toBe(name === "prefix_tuning" ? 1 : 5);
    const out = await run(lm, { config, params }, golden, true);

    expect(Math.abs((out.loss.data as Float32Array)[0] - (golden.get("loss")!.data as Float32Array)[0])).toBeLessThan(1e-5);
    expectLogits(out.logits.data as Float32Array, golden);
    for (const param of params.keys()) expectClose(out[`grad.${param}`].data as Float32Array, golden.get(`grad.prompt_encoder.${param}`)!.data as Float32Array, 1e-5, 1e-3);

    // What inference keeps (per layer [kvHeads, n, headDim], grouped-query sized) and what is saved (the MLP folded).
    const form = prefixTuning.inferenceForm(config, params);
    if (form.kind !== "past") throw new Error("expected a past");
    form.layers.forEach((kv, l) => {
      expectClose(kv.key, golden.get(`prefix.layer${l}.key`)!.data as Float32Array, 1e-6, 1e-5);
      expectClose(kv.value, golden.get(`prefix.layer${l}.value`)!.data as Float32Array, 1e-6, 1e-5);
    });
    const saved = prefixTuning.toPeftTensors(config, params).get("prompt_embeddings")!;
    expect(saved.shape).toEqual(golden.get("prompt_embeddings_as_saved")!.shape);
    expectClose(saved.data, golden.get("prompt_embeddings_as_saved")!.data as Float32Array, 1e-6, 1e-5);
  });

  it.each(CASES)("the PEFT-written %s adapter loads and reproduces PEFT's loss and logits", async (name) => {
    const lm = await loadGoldenModel(arch);
    const golden = await readCase(arch, name);
    const adapter = await loadAdapter(adapterDir(arch, name));
    expect(adapter.method).toBe(prefixTuning);
    expect(adapter.config.num_attention_heads).toBe(lm.config.numKvHeads);
    const out = await run(lm, adapter, golden, false);
    expect(Math.abs((out.loss.data as Float32Array)[0] - (golden.get("loss")!.data as Float32Array)[0])).toBeLessThan(1e-5);
    expectLogits(out.logits.data as Float32Array, golden);
  });
});
