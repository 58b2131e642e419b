// PEFT's adapter folder: PEFT's own files load, ours have PEFT's layout, and bad adapters are refused clearly.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, writeFileSync, rmSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BASE_FINGERPRINT, baseFingerprint, checkAdapterFits } from "../src/peft/adapter.js";
import { loadPromptAdapter, savePromptAdapter } from "../src/peft/prompt-tuning/index.js";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { SoftpromptError } from "../src/util/errors.js";
import { ARCHS, adapterDir, readCase } from "./helpers/golden.js";

const tmp = () => mkdtempSync(join(tmpdir(), "softprompt-adapter-"));

describe("PEFT prompt-tuning adapters", () => {
  it.each(ARCHS)("%s: the adapter PEFT wrote loads with the golden prompt", async (arch) => {
    const adapter = await loadPromptAdapter(adapterDir(arch, "prompt_tuning"));
    const golden = await readCase(arch, "prompt_tuning");
    expect(adapter.config.num_virtual_tokens).toBe(5);
    expect([...adapter.embeddings]).toEqual([...(golden.get("prompt_embeddings")!.data as Float32Array)]);
  });

  it("ours round-trips and has PEFT's layout: same config keys, one F32 tensor prompt_embeddings, format pt", async () => {
    const peftDir = adapterDir("gpt2", "prompt_tuning");
    const peft = await loadPromptAdapter(peftDir);
    const dir = tmp();
    await savePromptAdapter(dir, peft);
    expect(readdirSync(dir).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
    const ours = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
    const theirs = JSON.parse(readFileSync(join(peftDir, "adapter_config.json"), "utf8"));
    expect(Object.keys(ours).sort()).toEqual(Object.keys(theirs).sort());
    expect(ours).toEqual(theirs);
    const file = await SafetensorsFile.open(join(dir, "adapter_model.safetensors"));
    expect(file.tensorNames()).toEqual(["prompt_embeddings"]);
    expect(file.info("prompt_embeddings")).toMatchObject({ dtype: "F32", shape: [5, 64] });
    expect(file.metadata).toEqual({ format: "pt" });
    await file.close();
    const back = await loadPromptAdapter(dir);
    expect(back.embeddings).toEqual(peft.embeddings);
    rmSync(dir, { recursive: true });
  });

  it("refuses a PEFT adapter for another width, depth or base model name", async () => {
    const adapter = await loadPromptAdapter(adapterDir("gpt2", "prompt_tuning"));
    const base = { name: "model", hiddenSize: 64, numLayers: 2, numHeads: 4, embeddings: new Float32Array(8) };
    expect(() => checkAdapterFits(adapter, { ...base, hiddenSize: 128 }, "a")).toThrow(/token_dim 64 does not match the model's hidden size 128/);
    expect(() => checkAdapterFits(adapter, { ...base, numLayers: 3 }, "a")).toThrow(/num_layers 2 does not match the model's 3/);
    expect(() => checkAdapterFits(adapter, { ...base, name: "HuggingFaceTB/SmolLM2-135M" }, "a")).toThrow(/made for base model "model"/);
    expect(() => checkAdapterFits(adapter, { ...base, name: "/some/where/model/" }, "a")).not.toThrow();
  });

  it("with our fingerprint, refuses any other base model exactly", async () => {
    const adapter = await loadPromptAdapter(adapterDir("gpt2", "prompt_tuning"));
    const embeddings = Float32Array.of(1, 2, 3);
    const ours = { ...adapter, metadata: { [BASE_FINGERPRINT]: baseFingerprint(embeddings) } };
    const base = { name: "model", hiddenSize: 64, numLayers: 2, numHeads: 4, embeddings };
    expect(() => checkAdapterFits(ours, base, "a")).not.toThrow();
    expect(() => checkAdapterFits(ours, { ...base, embeddings: Float32Array.of(1, 2, 4) }, "a")).toThrow(/trained on another base model/);
  });

  it("names the file and field of a bad adapter", async () => {
    const dir = tmp();
    const peftDir = adapterDir("gpt2", "prompt_tuning");
    const expectError = async (pattern: RegExp) => {
      const err = await loadPromptAdapter(dir).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SoftpromptError);
      expect((err as Error).message).toMatch(pattern);
    };
    await expectError(/adapter_config.json: missing/);
    writeFileSync(join(dir, "adapter_config.json"), "{not json");
    writeFileSync(join(dir, "adapter_model.safetensors"), readFileSync(join(peftDir, "adapter_model.safetensors")));
    await expectError(/adapter_config.json: not valid JSON/);
    const config = JSON.parse(readFileSync(join(peftDir, "adapter_config.json"), "utf8"));
    writeFileSync(join(dir, "adapter_config.json"), JSON.stringify({ ...config, peft_type: "IA3" }));
    await expectError(/field "peft_type": peft_type "IA3" is not supported/);
    writeFileSync(join(dir, "adapter_config.json"), JSON.stringify({ ...config, num_virtual_tokens: 6 }));
    await expectError(/tensor "prompt_embeddings": shape \[5, 64\] does not match the config's \[6, 64\]/);
    writeFileSync(join(dir, "adapter_config.json"), JSON.stringify(config));
    writeFileSync(join(dir, "adapter_model.safetensors"), Buffer.from([1, 2, 3]));
    await expectError(/adapter_model.safetensors/);
    rmSync(dir, { recursive: true });
  });
});
