// Virtual tokens past the context window are refused with a clear error before anything runs or is
// written — in eval and generate as in train (test/train/run-safety.test.ts) — never a raw Gather
// failure from ONNX Runtime.
import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { savePromptAdapter } from "../../src/peft/prompt-tuning/index.js";
import { evaluate, generateText } from "../../src/workflows.js";
import { modelDir } from "../helpers/golden.js";

describe("a prompt longer than the context window", () => {
  const dir = mkdtempSync(join(tmpdir(), "softprompt-context-"));
  const adapter = join(dir, "adapter");
  const data = join(dir, "data.jsonl");

  it("is refused by eval and generate, naming the sizes", async () => {
    // 200 vectors for the golden gpt2 (128 learned positions), as PEFT would write them.
    await savePromptAdapter(adapter, {
      config: { peft_type: "PROMPT_TUNING", task_type: "CAUSAL_LM", num_virtual_tokens: 200, token_dim: 64, num_transformer_submodules: 1, prompt_tuning_init: "RANDOM", inference_mode: true, base_model_name_or_path: "model" },
      embeddings: new Float32Array(200 * 64).fill(0.01),
    });
    writeFileSync(data, JSON.stringify({ prompt: "a b", completion: " c" }) + "\n");
    const quiet = () => undefined;
    await expect(evaluate({ model: modelDir("gpt2"), data, adapter, onWarning: quiet })).rejects.toThrow(/reach position 199, but the model has 128 positions/);
    await expect(generateText({ model: modelDir("gpt2"), adapter, inputs: ["a b"], maxNewTokens: 4, onWarning: quiet })).rejects.toThrow(/reach position 199, but the model has 128 positions/);
    rmSync(dir, { recursive: true });
  });
});
