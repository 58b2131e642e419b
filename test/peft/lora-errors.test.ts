// Bad LoRA input, each a clear error naming the field (or tensor) and what is accepted: config fields we
// do not compute, bias other than "none", target modules that match nothing (the model's modules listed),
// ranks of 0 or above a layer's width, tensors that are not plain LoRA factors or lack their pair, LoRA
// factors that do not fit the model at inference, and a LoRA adapter where a prompt is required.
import { describe, expect, it } from "vitest";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadAdapter } from "../../src/peft/adapter.js";
import { lora } from "../../src/peft/lora/index.js";
import { resolveTargets } from "../../src/peft/lora/targets.js";
import { writeSafetensors, type TensorToWrite } from "../../src/formats/safetensors.js";
import { loadModel } from "../../src/models/index.js";
import { loadSoftPrompt, inspect } from "../../src/workflows.js";
import { generate } from "../../src/infer/generate.js";
import { scoreCompletions } from "../../src/infer/score.js";
import { SoftpromptError } from "../../src/util/errors.js";
import { adapterDir, loadGoldenModel, modelDir } from "../helpers/golden.js";
import { readTensors } from "../helpers/golden.js";

/** The golden llama LoRA adapter (q_proj, v_proj; r 4) copied, its config changed by `edit`, and its tensors by `tensors`. */
async function variant(edit: (config: Record<string, unknown>) => void, tensors?: (t: Map<string, { data: Float32Array; shape: number[] }>) => void): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "sp-lora-bad-"));
  cpSync(adapterDir("llama", "lora"), dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
  edit(config);
  writeFileSync(join(dir, "adapter_config.json"), JSON.stringify(config));
  if (tensors !== undefined) {
    const t = (await readTensors(join(dir, "adapter_model.safetensors"))) as Map<string, { data: Float32Array; shape: number[] }>;
    tensors(t);
    const out: Record<string, TensorToWrite> = {};
    for (const [name, v] of t) out[name] = { dtype: "F32", shape: v.shape, data: v.data };
    await writeSafetensors(join(dir, "adapter_model.safetensors"), out, { format: "pt" });
  }
  return dir;
}

async function expectError(run: () => Promise<unknown>, place: { field?: string; tensor?: string }, message: RegExp): Promise<void> {
  const err = await run().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SoftpromptError);
  expect((err as SoftpromptError).place).toMatchObject(place);
  expect((err as SoftpromptError).message).toMatch(message);
}

const Q0 = "base_model.model.model.layers.0.self_attn.q_proj";

describe("LoRA adapter files we cannot serve are refused by field", () => {
  it.each([
    ["use_dora", true, /true is not supported here \(it changes the model beyond plain LoRA\); accepted: false/],
    ["rank_pattern", { q_proj: 8 }, /accepted: \{\} or absent/],
    ["layers_to_transform", [0], /accepted: null or absent/],
    ["modules_to_save", ["lm_head"], /accepted: null or absent/],
    ["bias", "all", /expected "none"/],
    ["r", 0, /expected number to be >0|Too small/i],
    ["task_type", "SEQ_CLS", /CAUSAL_LM/],
  ])("%s = %j", async (field, value, message) => {
    const dir = await variant((c) => (c[field] = value));
    try {
      await expectError(() => loadAdapter(dir), { field }, message);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("tensors that are not LoRA factors (DoRA's magnitude), a factor without its pair, a rank other than the config's", async () => {
    const cases: [(t: Map<string, { data: Float32Array; shape: number[] }>) => void, { tensor?: string }, RegExp][] = [
      [(t) => t.set(`${Q0}.lora_magnitude_vector`, { data: new Float32Array(64), shape: [64] }), { tensor: `${Q0}.lora_magnitude_vector` }, /is not a LoRA factor .*DoRA/],
      [(t) => t.delete(`${Q0}.lora_B.weight`), {}, new RegExp(`${Q0.replace(/\./g, "\\.")}\\.lora_B\\.weight is missing: each module needs lora_A and lora_B`)],
      [(t) => t.set(`${Q0}.lora_A.weight`, { data: new Float32Array(2 * 64), shape: [2, 64] }), { tensor: `${Q0}.lora_A.weight` }, /does not have the config's rank r = 4/],
    ];
    for (const [edit, place, message] of cases) {
      const dir = await variant(() => undefined, edit);
      try {
        await expectError(() => loadAdapter(dir), place, message);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });
});

describe("LoRA against a model", () => {
  it("target_modules that match nothing list the model's modules; a rank above a layer's width is named", async () => {
    const model = await loadModel(modelDir("llama"));
    const none = await variant((c) => (c.target_modules = ["c_attn"]));
    const regex = await variant((c) => (c.target_modules = ".*\\.attn\\..*"));
    try {
      for (const dir of [none, regex]) {
        await expectError(() => loadSoftPrompt(dir, model, "model"), { field: "target_modules" }, /matches no module of this model(?: \(one string .*\))?; it has q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj \(e\.g\. model\.layers\.0\.self_attn\.q_proj\), or "all-linear"/);
      }
    } finally {
      rmSync(none, { recursive: true, force: true });
      rmSync(regex, { recursive: true, force: true });
    }
    const lm = model.lm;
    const ctx = { lm, tokenizer: model.tokenizer, baseModelName: "model", seed: 0 };
    // v_proj is 64 → 32 wide on this model (2 of 4 heads for keys/values): rank 33 fits q_proj but not it.
    expect(() => lora.makeConfig(lora.options.parse({ r: 33, targetModules: ["q_proj", "v_proj"] }), ctx)).toThrow(/rank 33 does not fit: it must be an integer from 1 to 32, the narrowest adapted layer's width \(model\.layers\.0\.self_attn\.v_proj: 64 → 32\)/);
    expect(() => lora.makeConfig(lora.options.parse({ r: 33, targetModules: ["q_proj"] }), ctx)).not.toThrow();
    expect(() => lora.options.parse({ r: 0 })).toThrow();
    // A regular expression over the whole name works as in PEFT (re.fullmatch); names and suffixes in a list; exclusions.
    const keys = (spec: Parameters<typeof resolveTargets>[1]) => resolveTargets(lm, spec, { field: "target_modules", excludeField: "exclude_modules" }).map((t) => t.key);
    expect(keys({ target_modules: "model\\.layers\\.1\\.self_attn\\.(q|v)_proj" })).toEqual(["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]);
    expect(() => keys({ target_modules: "q_proj" })).toThrow(/"q_proj" matches no module of this model \(one string is a regular expression over the whole name, as in PEFT; a list takes names and suffixes\)/);
  });

  it("list entries match whole names or dotted suffixes; exclude_modules leaves some out, and excluding all is an error", async () => {
    const lm = await loadGoldenModel("gpt2");
    const keys = (spec: Parameters<typeof resolveTargets>[1]) => resolveTargets(lm, spec, { field: "target_modules", excludeField: "exclude_modules" }).map((t) => t.key);
    expect(keys({ target_modules: ["attn.c_proj", "transformer.h.0.mlp.c_fc"] })).toEqual(["transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_fc", "transformer.h.1.attn.c_proj"]);
    expect(keys({ target_modules: ["c_proj"], exclude_modules: ["mlp.c_proj"] })).toEqual(["transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_proj"]);
    expect(keys({ target_modules: "all-linear" })).toHaveLength(8);
    expect(() => keys({ target_modules: ["c_attn"], exclude_modules: ["c_attn"] })).toThrow(/excludes every targeted module/);
  });

  it("LoRA factors handed to generate must fit the model; empty inputs cannot be scored after one; inspect refuses it", async () => {
    const lm = await loadGoldenModel("llama");
    const module = "model.layers.0.self_attn.q_proj";
    const bad = { id: "bad", modules: [{ module: "model.layers.0.attn.c_attn", rank: 1, a: new Float32Array(64), b: new Float32Array(64) }] };
    await expectError(() => generate(lm, undefined, [{ inputIds: [1], prompt: bad, maxNewTokens: 1 }]), { field: "requests[0].prompt.modules[0].module" }, /targets "model\.layers\.0\.attn\.c_attn", which is not a projection of this model; it has q_proj/);
    const short = { id: "short", modules: [{ module, rank: 2, a: new Float32Array(64), b: new Float32Array(64) }] };
    await expectError(() => generate(lm, undefined, [{ inputIds: [1], prompt: short, maxNewTokens: 1 }]), { field: "requests[0].prompt.modules[0].a" }, /q_proj's A must be a Float32Array \[2, 64\] \(128 values\)/);
    const ok = { id: "ok", modules: [{ module, rank: 1, a: new Float32Array(64), b: new Float32Array(64) }] };
    await expectError(() => scoreCompletions(lm, [{ inputIds: [], completionIds: [3], prompt: ok }]), { field: "requests[0].inputIds" }, /a LoRA adapter \("ok"\) puts nothing before the input/);
    await expectError(() => inspect({ model: modelDir("llama"), adapter: adapterDir("llama", "lora"), onWarning: () => undefined }), { field: "--adapter" }, /is a LoRA adapter \(low-rank weight updates\), not virtual-token embeddings/);
  });
});
