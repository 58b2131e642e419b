// LoRA against real PEFT 0.21 on the golden models (GPT-2's Conv1D c_attn; q_proj/v_proj on llama and
// qwen2): loss, logits and the gradient of every lora_A/lora_B; PEFT-written adapters load and give
// PEFT's loss and logits; merged into the weights, the same logits as unmerged.
import { describe, expect, it } from "vitest";
import * as o from "../../src/graph/ops.js";
import type { CausalLM } from "../../src/models/causal-lm.js";
import { arangePositions, attentionPattern, idsTensor } from "../../src/models/inputs.js";
import { Program } from "../../src/runtime/session.js";
import { loadAdapter } from "../../src/peft/adapter.js";
import { lora, canonicalModules } from "../../src/peft/lora/index.js";
import { type LoraConfig, loraConfigSchema } from "../../src/peft/lora/config.js";
import { mergeLora } from "../../src/peft/lora/merge.js";
import type { Params } from "../../src/peft/method.js";
import { ARCHS, adapterDir, goldenIndex, loadGoldenModel, readCase, rows } from "../helpers/golden.js";
import { type Case, caseBatch, caseParams, expectClose, expectLogits, lossOf, runMethod } from "../helpers/method-case.js";

/** The case's factors read as an adapter file is: by PEFT's tensor names. */
async function peftParams(golden: Case, config: ReturnType<typeof loraConfigSchema.parse>): Promise<{ params: Params; peft: Params }> {
  const peft = caseParams(golden);
  const params = await lora.fromPeftTensors(config, async (name) => peft.get(name)!, "golden", [...peft.keys()]);
  return { params, peft };
}

/** Logits [B, T, V] of the bare forward of `lm` (a merged model) on the case's batch, positions 0..T-1 as PEFT's. */
async function plainLogits(lm: CausalLM, golden: Case): Promise<Float32Array> {
  const ids = rows(golden.get("input_ids")!);
  const mask = rows(golden.get("attention_mask")!);
  const [B, T] = [ids.length, ids[0].length];
  const { hidden } = lm.forward({
    inputsEmbeds: lm.embed(o.input("input_ids", "int64", ["batch", "seq"])),
    positions: o.input("position_ids", "int64", ["batch", "seq"]),
    allowed: o.input("allowed", "bool", ["batch", 1, "seq", "seq"]),
  });
  const program = await Program.compile({ logits: lm.lmHead(o.reshape(hidden, [-1, lm.config.hiddenSize])) });
  const out = await program.run({ ...lm.weights.feeds(), input_ids: idsTensor(ids), position_ids: arangePositions(B, T), allowed: attentionPattern(mask, T) });
  return out.logits.data as Float32Array;
}

describe.each(ARCHS)("%s LoRA matches PEFT", (arch) => {
  it("loss, logits and the gradient of every lora_A and lora_B", async () => {
    const lm = await loadGoldenModel(arch);
    const golden = await readCase(arch, "lora");
    const config = loraConfigSchema.parse(goldenIndex(arch).cases.lora.adapter_config);
    const { params, peft } = await peftParams(golden, config);
    expect(params.size).toBe(arch === "gpt2" ? 4 : 8); // c_attn, or q_proj and v_proj, in 2 layers; each A and B
    const out = await runMethod(lm, lora, config, params, caseBatch(golden), true);
    expect(Math.abs(lossOf(out) - (golden.get("loss")!.data as Float32Array)[0])).toBeLessThan(1e-5);
    expectLogits(out.logits.data as Float32Array, golden, 0);
    const peftNames = lora.toPeftTensors(config, params);
    expect([...peftNames.keys()].sort()).toEqual([...peft.keys()].sort());
    for (const [ours, p] of params) {
      const name = [...peftNames].find(([, q]) => q === p)![0];
      expectClose(out[`grad.${ours}`].data as Float32Array, golden.get(`grad.${name}`)!.data as Float32Array, 1e-5, 1e-3, ours);
    }
  });

  it("the PEFT-written adapter loads and gives PEFT's loss and logits", async () => {
    const lm = await loadGoldenModel(arch);
    const golden = await readCase(arch, "lora");
    const adapter = await loadAdapter(adapterDir(arch, "lora"));
    expect(adapter.method).toBe(lora);
    expect(adapter.config).toMatchObject({ r: 4, lora_alpha: 8, fan_in_fan_out: arch === "gpt2" });
    const out = await runMethod(lm, lora, adapter.config, adapter.params, caseBatch(golden), false);
    expect(Math.abs(lossOf(out) - (golden.get("loss")!.data as Float32Array)[0])).toBeLessThan(1e-5);
    expectLogits(out.logits.data as Float32Array, golden, 0);
  });

  it("merged into a copy of the adapted weights: PEFT's logits, every other weight shared with the base", async () => {
    const lm = await loadGoldenModel(arch);
    const golden = await readCase(arch, "lora");
    const adapter = await loadAdapter(adapterDir(arch, "lora"));
    const form = lora.inferenceForm(adapter.config as LoraConfig, adapter.params);
    if (form.kind !== "lora") throw new Error("expected a LoRA form");
    const modules = canonicalModules(lm, form.modules);
    const merged = mergeLora(lm, modules);
    const adapted = new Set(modules.map((f) => `${f.module}.weight`));
    expect(adapted.size).toBe(arch === "gpt2" ? 2 : 4);
    for (const name of lm.weights.names()) {
      const same = merged.weights.tensor(name).data === lm.weights.tensor(name).data;
      expect(same, name).toBe(!adapted.has(name));
    }
    const mergedLogits = await plainLogits(merged, golden);
    expectLogits(mergedLogits, golden, 0);
    const unmerged = (await runMethod(lm, lora, adapter.config, adapter.params, caseBatch(golden), false)).logits.data as Float32Array;
    const mask = golden.get("attention_mask")!.data as number[];
    const V = lm.config.vocabSize;
    let worst = 0;
    for (let i = 0; i < unmerged.length; i++) if (mask[Math.floor(i / V)] === 1) worst = Math.max(worst, Math.abs(unmerged[i] - mergedLogits[i]));
    expect(worst).toBeLessThan(1e-4);
    // The base model is untouched by merging.
    expectLogits(await plainLogits(lm, await readCase(arch, "forward")), await readCase(arch, "forward"), 0);
  });
});
