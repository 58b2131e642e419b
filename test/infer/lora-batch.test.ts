// Several LoRA adapters in one batch, unmerged (each row gathers its own factors), beside soft-prompt,
// prefix and bare rows, on the golden models: each row's tokens are those of running it alone, a LoRA
// row's are those of its adapter merged into the weights, and its log-probabilities the merged model's.
import { describe, expect, it } from "vitest";
import type { CausalLM } from "../../src/models/causal-lm.js";
import { GenerationEngine, type RowId } from "../../src/infer/engine.js";
import { type GenerateRequest, generate } from "../../src/infer/generate.js";
import { PromptCache, type PrefixPrompt } from "../../src/infer/kv-cache.js";
import { type LoraPrompt, LoraBatcher } from "../../src/infer/lora.js";
import { scoreCompletions } from "../../src/infer/score.js";
import { loadAdapter } from "../../src/peft/adapter.js";
import { canonicalModules, lora } from "../../src/peft/lora/index.js";
import { mergeLora } from "../../src/peft/lora/merge.js";
import { prefixTuning } from "../../src/peft/prefix-tuning/index.js";
import type { LoraConfig } from "../../src/peft/lora/config.js";
import type { InferenceForm, Params } from "../../src/peft/method.js";
import { Rng } from "../../src/util/rng.js";
import { ARCHS, adapterDir, loadGoldenModel } from "../helpers/golden.js";
import { randomPrompt } from "./prompts.js";

function loraPrompt(lm: CausalLM, id: string, form: InferenceForm): LoraPrompt {
  if (form.kind !== "lora") throw new Error("expected a LoRA form");
  return { id, modules: canonicalModules(lm, form.modules) };
}

/** PEFT's golden adapter (r 4), and one of ours over every projection at rank 2 with random B (another module set and rank). */
async function twoAdapters(lm: CausalLM, arch: string): Promise<[LoraPrompt, LoraPrompt]> {
  const peft = await loadAdapter(adapterDir(arch as never, "lora"));
  const options = lora.options.parse({ r: 2, loraAlpha: 4, targetModules: ["all-linear"] });
  const ctx = { lm, tokenizer: undefined as never, baseModelName: "model", seed: 7 };
  const config = lora.makeConfig(options, ctx);
  const params: Params = await lora.initParams(options, ctx);
  const rng = new Rng(8);
  for (const [name, p] of params) if (name.endsWith(".lora_B")) p.data = Float32Array.from(p.data, () => rng.normal() * 0.2);
  return [loraPrompt(lm, "peft", lora.inferenceForm(peft.config as LoraConfig, peft.params)), loraPrompt(lm, "ours", lora.inferenceForm(config, params))];
}

async function goldenPrefix(arch: string): Promise<PrefixPrompt> {
  const adapter = await loadAdapter(adapterDir(arch as never, "prefix_tuning"));
  const form = prefixTuning.inferenceForm(adapter.config as never, adapter.params);
  if (form.kind !== "past") throw new Error("expected a past");
  return { id: "prefix", numVirtual: form.numVirtual, layers: form.layers };
}

const INPUTS = [[5, 17, 42, 9], [300, 2], [11, 12, 13, 14, 15, 16], [77, 78, 79], [250, 251, 252, 253, 254]];

describe.each(ARCHS)("%s: LoRA rows in mixed batches", (arch) => {
  it("one generate call — two LoRA adapters, a soft prompt, a prefix, none — gives each row its own tokens alone, LoRA rows the merged model's", async () => {
    const lm = await loadGoldenModel(arch);
    const [first, second] = await twoAdapters(lm, arch);
    const cache = new PromptCache(lm);
    const prompts = [first, second, randomPrompt("soft", 3, lm.config.hiddenSize, 1), await goldenPrefix(arch), undefined];
    const requests: GenerateRequest[] = INPUTS.map((inputIds, i) => ({ inputIds, prompt: prompts[i], maxNewTokens: 6 }));
    const batched = await generate(lm, undefined, requests, { promptCache: cache });
    for (const [i, request] of requests.entries()) {
      const solo = await generate(lm, undefined, [request], { promptCache: cache });
      expect(batched[i].ids, `row ${i}`).toEqual(solo[0].ids);
    }
    for (const [i, adapter] of [first, second].entries()) {
      const merged = await generate(mergeLora(lm, adapter.modules), undefined, [{ ...requests[i], prompt: undefined }]);
      expect(batched[i].ids, adapter.id).toEqual(merged[0].ids);
    }
    // The two adapters differ, and differ from the bare model, on the same input.
    const sameInput = await generate(lm, undefined, [first, second, undefined].map((prompt) => ({ inputIds: INPUTS[0], prompt, maxNewTokens: 6 })), { promptCache: cache });
    expect(new Set(sameInput.map((g) => g.ids.join(" "))).size).toBe(3);
  });

  it("rows join and leave between steps: a LoRA row joins a running batch of other adapters and still gets its own tokens", async () => {
    const lm = await loadGoldenModel(arch);
    const [first, second] = await twoAdapters(lm, arch);
    const cache = new PromptCache(lm);
    const engine = new GenerationEngine(lm);
    const plans = [
      { at: 0, request: { inputIds: INPUTS[0], prompt: first, maxNewTokens: 6 } }, // decodes beside the second adapter from step 3
      { at: 0, request: { inputIds: INPUTS[2], prompt: randomPrompt("soft", 2, lm.config.hiddenSize, 3), maxNewTokens: 7 } },
      { at: 2, request: { inputIds: INPUTS[1], prompt: second, maxNewTokens: 5 } },
      { at: 4, request: { inputIds: INPUTS[3], maxNewTokens: 4 } },
    ];
    const ids: RowId[] = [];
    const done = new Map<RowId, number[]>();
    for (let step = 0; step <= 4 || engine.size > 0; step++) {
      plans.forEach((p, i) => {
        if (p.at === step) ids[i] = engine.add({ ...p.request, prompt: p.request.prompt === undefined ? undefined : cache.get(p.request.prompt) });
      });
      for (const t of await engine.step()) if (t.done) done.set(t.row, t.done.ids);
    }
    for (const [i, p] of plans.entries()) {
      const solo = await generate(lm, undefined, [p.request], { promptCache: cache });
      expect(done.get(ids[i]), `plan ${i}`).toEqual(solo[0].ids);
    }
  });

  it("scored unmerged in one batch with a bare row, a LoRA row's log-probabilities are the merged model's within 1e-4", async () => {
    const lm = await loadGoldenModel(arch);
    const [first, second] = await twoAdapters(lm, arch);
    const completionIds = [40, 41, 42, 43];
    const batch = await scoreCompletions(lm, [first, second, undefined].map((prompt) => ({ inputIds: INPUTS[0], completionIds, prompt })));
    for (const [i, adapter] of [first, second].entries()) {
      const [merged] = await scoreCompletions(mergeLora(lm, adapter.modules), [{ inputIds: INPUTS[0], completionIds }]);
      batch[i].tokenLogProbs.forEach((lp, j) => expect(Math.abs(lp - merged.tokenLogProbs[j]), `${adapter.id} token ${j}`).toBeLessThan(1e-4));
    }
    const [bare] = await scoreCompletions(lm, [{ inputIds: INPUTS[0], completionIds }]);
    batch[2].tokenLogProbs.forEach((lp, j) => expect(Math.abs(lp - bare.tokenLogProbs[j])).toBeLessThan(1e-5));
    expect(Math.abs(batch[0].logLikelihood - bare.logLikelihood)).toBeGreaterThan(1e-3);
  });
});

describe("LoraBatcher", () => {
  it("stacks each adapter once per set, slot 0 zeros for bare rows, ranks zero-padded to the largest", async () => {
    const lm = await loadGoldenModel("llama");
    const [first, second] = await twoAdapters(lm, "llama");
    const batcher = new LoraBatcher(lm);
    const batch = batcher.batch([undefined, second, first, second])!;
    expect(batch.modules.length).toBe(14); // all-linear: 7 projections × 2 layers (q_proj and v_proj among them)
    expect([...(batch.feeds["lora.index"].data as BigInt64Array)]).toEqual([0n, 1n, 2n, 1n]);
    const q = "model.layers.0.self_attn.q_proj";
    const a = batch.feeds[`lora.${q}.A`];
    expect(a.dims).toEqual([3, 4, lm.config.hiddenSize]); // zero slot, then "ours" (r 2) and "peft" (r 4)
    const data = a.data as Float32Array;
    const d = lm.config.hiddenSize;
    expect(data.subarray(0, 4 * d).every((v) => v === 0)).toBe(true);
    expect(data.subarray(4 * d + 2 * d, 8 * d).every((v) => v === 0)).toBe(true); // rank 2 padded to 4
    expect(data.subarray(8 * d, 12 * d)).toEqual(first.modules.find((f) => f.module === q)!.a);
    expect(batcher.batch([undefined, second, first, second])!.feeds[`lora.${q}.A`]).toBe(a); // memoised
    expect(batcher.batch([undefined, undefined])).toBeUndefined();
  });
});
