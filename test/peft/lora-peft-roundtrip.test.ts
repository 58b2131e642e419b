// LoRA in PEFT's format both ways, checked with PEFT 0.21 itself (numbers made by
// test/fixtures/reference/make_lora_reference.py): the adapters we write are the files PEFT loaded — its
// own save_pretrained writes the same adapter_config.json, its scaling is ours (alpha/√r with rsLoRA) —
// and on the golden batch give PEFT's loss, logits and the gradient of every lora_A/lora_B, on GPT-2's
// Conv1D layers (all four kinds) and with rsLoRA included.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadAdapter } from "../../src/peft/adapter.js";
import { lora } from "../../src/peft/lora/index.js";
import { loraScale } from "../../src/peft/lora/layer.js";
import type { LoraConfig } from "../../src/peft/lora/config.js";
import { OUR_ADAPTERS, OURS, type OurAdapter, writeOurAdapter } from "../fixtures/reference/lora_ours.js";
import { ARCHS, type Arch, loadGoldenModel, readCase, readTensors } from "../helpers/golden.js";
import { caseBatch, expectClose, expectLogits, lossOf, runMethod } from "../helpers/method-case.js";

const REFERENCE = fileURLToPath(new URL("../fixtures/reference/", import.meta.url));
const reference = JSON.parse(readFileSync(join(REFERENCE, "lora_reference.json"), "utf8")) as Record<
  Arch,
  Record<OurAdapter, { loss: number; peft_type: string; scaling: number[]; wrapped: string[]; config_keys_peft_writes_differently: string[] }>
>;

describe.each(ARCHS)("%s: LoRA adapters we write, in PEFT", (arch) => {
  it.each(Object.keys(OUR_ADAPTERS) as OurAdapter[])("our %s adapter is the file PEFT loaded, and gives PEFT's loss, logits and gradients", async (name) => {
    const dir = mkdtempSync(join(tmpdir(), "sp-lora-"));
    try {
      await writeOurAdapter(arch, name, dir);
      for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
        expect(readFileSync(join(dir, file)).equals(readFileSync(join(OURS, arch, name, file))), file).toBe(true);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const want = reference[arch][name];
    expect(want.config_keys_peft_writes_differently).toEqual([]);
    const adapter = await loadAdapter(join(OURS, arch, name));
    const config = adapter.config as LoraConfig;
    expect(adapter.method.peftType).toBe(want.peft_type);
    expect(want.scaling).toEqual([loraScale(config)]);
    expect(want.scaling).toEqual([config.use_rslora ? config.lora_alpha / Math.sqrt(config.r) : config.lora_alpha / config.r]);
    // The modules PEFT wrapped are the ones we hold factors for.
    expect([...adapter.params.keys()].filter((n) => n.endsWith(".lora_A")).map((n) => n.slice(0, -".lora_A".length)).sort()).toEqual(want.wrapped);

    const lm = await loadGoldenModel(arch);
    const golden = await readCase(arch, "lora"); // the batch
    const peft = await readTensors(join(REFERENCE, "lora_reference", arch, `${name}.safetensors`));
    const out = await runMethod(lm, lora, config, adapter.params, caseBatch(golden), true);
    expect(Math.abs(lossOf(out) - want.loss)).toBeLessThan(1e-5);
    expectLogits(out.logits.data as Float32Array, new Map([...golden, ["logits", peft.get("logits")!]]), 0);
    const names = lora.toPeftTensors(config, adapter.params);
    for (const [peftName, p] of names) {
      const ours = [...adapter.params].find(([, q]) => q === p)![0];
      expectClose(out[`grad.${ours}`].data as Float32Array, peft.get(`grad.${peftName}`)!.data as Float32Array, 1e-5, 1e-3, peftName);
    }
  });
});
