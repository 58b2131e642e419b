// A PEFT-written adapter carries no fingerprint of its base model: what it records is checked, and what
// cannot be checked is said, so a prompt from the golden gpt2 loaded on the golden llama (same width,
// depth, heads and folder name) is not silently trusted. Ours carry a fingerprint and are refused exactly.
import { describe, expect, it } from "vitest";
import { loadModel } from "../../src/models/index.js";
import { loadSoftPrompt, evaluate } from "../../src/workflows.js";
import { adapterDir, modelDir } from "../helpers/golden.js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

describe("adapter fit", () => {
  it("a PEFT adapter from another model with the same shapes loads with a warning naming what could not be verified", async () => {
    const model = await loadModel(modelDir("llama"));
    const loaded = await loadSoftPrompt(adapterDir("gpt2", "prompt_tuning"), model, modelDir("llama"));
    expect(loaded.warnings).toHaveLength(1);
    expect(loaded.warnings[0]).toMatch(/written without a fingerprint of its base model .*: token_dim, num_layers, num_attention_heads, base_model_name_or_path match .*, but the base model's weights could not be verified/);
  });

  it("the warning reaches the caller of a workflow", async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-fit-"));
    const data = join(dir, "data.jsonl");
    writeFileSync(data, JSON.stringify({ prompt: "a b", completion: " c" }) + "\n");
    const warnings: string[] = [];
    await evaluate({ model: modelDir("llama"), data, adapter: adapterDir("gpt2", "prompt_tuning"), onWarning: (w) => warnings.push(w) });
    expect(warnings.join("\n")).toMatch(/could not be verified/);
    rmSync(dir, { recursive: true });
  });
});
