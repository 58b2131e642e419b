// Every family works with every method: on each family's tiny transformers-made model, prefix tuning,
// LoRA and prompt tuning train (the loss falls), save and load as PEFT adapters, and generate in one
// mixed batch where each row gets exactly what it gets alone.
import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/models/index.js";
import { tokenizeExamples, type Example } from "../../src/data/index.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { trainAdapter } from "../../src/train/trainer.js";
import { loadSoftPrompt } from "../../src/workflows.js";
import { generate } from "../../src/infer/generate.js";

const FAMILIES_DIR = fileURLToPath(new URL("../fixtures/families/", import.meta.url));
const FAMILIES = ["qwen3", "gemma2", "gemma3_text", "phi3", "olmo2", "smollm3", "gpt_neox", "mistral"];
const METHODS: [string, Record<string, unknown>][] = [
  ["prompt", { numVirtualTokens: 4, lr: 0.1 }],
  ["prefix", { numVirtualTokens: 4, lr: 0.1 }],
  ["lora", { r: 4, lr: 0.05, targetModules: ["all-linear"] }],
];

describe.each(FAMILIES)("%s with every method", (family) => {
  it("prompt, prefix and LoRA train, save, load and share one generate batch, each row as if alone", async () => {
    const dir = join(FAMILIES_DIR, family, "model");
    const model = await loadModel(dir);
    const examples: Example[] = Array.from({ length: 8 }, (_, i) => ({ kind: "prompt", prompt: `item ${i} is`, completion: " blue" }));
    const { items } = tokenizeExamples(examples, model.tokenizer, { maxLength: 24 });
    const prompts = [];
    for (const [method, settings] of METHODS) {
      const output = mkdtempSync(join(tmpdir(), `softprompt-${family}-${method}-`));
      const losses: number[] = [];
      await trainAdapter({
        lm: model.lm, tokenizer: model.tokenizer, baseModelName: dir, train: items, valid: [], outputDir: output,
        config: parseTrainConfig({ method, steps: 8, batchSize: 4, seed: 3, ...settings }),
        onStep: (e) => losses.push(e.loss),
      });
      expect(losses.at(-1)!, `${family} ${method}`).toBeLessThan(losses[0]);
      prompts.push((await loadSoftPrompt(output, model, dir)).prompt);
      rmSync(output, { recursive: true });
    }
    const input = model.tokenizer.encode("item 3 is", { addSpecialTokens: false });
    const requests = [...prompts.map((prompt) => ({ inputIds: input, prompt, maxNewTokens: 6 })), { inputIds: input, maxNewTokens: 6 }];
    const together = await generate(model.lm, model.tokenizer, requests, { eosTokenIds: [] });
    for (const [i, request] of requests.entries()) {
      const [alone] = await generate(model.lm, model.tokenizer, [request], { eosTokenIds: [] });
      expect(together[i].ids, `${family} row ${i}`).toEqual(alone.ids);
    }
  });
});
