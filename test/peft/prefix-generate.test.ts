// Prefixes at inference on the golden models: a prefix row's first token is PEFT's argmax; one generate
// batch mixing prefix rows (plain, folded projection, a cartridge), a soft-prompt row and bare rows gives
// every row the tokens it gets alone; a prefix has no logits after it, so an empty input is refused.
import { describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/models/index.js";
import { generate, type GenerateRequest } from "../../src/infer/generate.js";
import { scoreCompletions } from "../../src/infer/score.js";
import { loadSoftPrompt } from "../../src/workflows.js";
import { SoftpromptError } from "../../src/util/errors.js";
import { ARCHS, adapterDir, modelDir, readCase } from "../helpers/golden.js";

const CARTRIDGE = (arch: string) => fileURLToPath(new URL(`../fixtures/reference/cartridge_peft/${arch}`, import.meta.url));

describe.each(ARCHS)("%s: prefixes in generate", (arch) => {
  it("a prefix row's first greedy token is the argmax of PEFT's last logits", async () => {
    const model = await loadModel(modelDir(arch));
    const golden = await readCase(arch, "prefix_tuning");
    const [, T] = golden.get("input_ids")!.shape;
    const ids = (golden.get("input_ids")!.data as number[]).slice(0, T); // row 0 has no padding
    const { prompt } = await loadSoftPrompt(adapterDir(arch, "prefix_tuning"), model, modelDir(arch));
    const [out] = await generate(model.lm, undefined, [{ inputIds: ids, prompt, maxNewTokens: 1 }]);
    const V = model.config.vocabSize;
    const last = (golden.get("logits")!.data as Float32Array).subarray((T - 1) * V, T * V);
    expect(out.ids).toEqual([last.indexOf(Math.max(...last))]);
  });

  it("one batch of prefix, projected-prefix, cartridge, soft-prompt and bare rows equals each row alone", async () => {
    const model = await loadModel(modelDir(arch));
    const load = (dir: string) => loadSoftPrompt(dir, model, modelDir(arch)).then((a) => a.prompt);
    const prefix = await load(adapterDir(arch, "prefix_tuning"));
    const projected = await load(adapterDir(arch, "prefix_tuning_proj"));
    const cartridge = await load(CARTRIDGE(arch));
    const soft = await load(adapterDir(arch, "prompt_tuning"));
    const texts = ["The model reads the text", "Prompt tuning", "A soft prompt is a few vectors.", "One frozen model"];
    const requests: GenerateRequest[] = [
      { text: texts[0], prompt: prefix },
      { text: texts[1], prompt: soft },
      { text: texts[2] },
      { text: texts[1], prompt: projected },
      { text: texts[3], prompt: cartridge },
      { text: texts[3], prompt: prefix },
      { text: texts[1] },
    ].map((r) => ({ ...r, maxNewTokens: 6 }));
    const together = await generate(model.lm, model.tokenizer, requests);
    const alone = await Promise.all(requests.map(async (r) => (await generate(model.lm, model.tokenizer, [r]))[0]));
    expect(together).toEqual(alone);
    // The prefixes do change the continuation (or the comparison above proves little).
    expect(together[5].ids).not.toEqual((await generate(model.lm, model.tokenizer, [{ text: texts[3], maxNewTokens: 6 }]))[0].ids);
  });

  it("scoring an empty input after a prefix is refused, naming the field; with an input it scores", async () => {
    const model = await loadModel(modelDir(arch));
    const { prompt } = await loadSoftPrompt(adapterDir(arch, "prefix_tuning"), model, modelDir(arch));
    const error = await scoreCompletions(model.lm, [{ inputIds: [], completionIds: [5, 6], prompt }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SoftpromptError);
    expect((error as SoftpromptError).place.field).toBe("requests[0].inputIds");
    expect((error as SoftpromptError).message).toMatch(/no logits after it/);
    const [score] = await scoreCompletions(model.lm, [{ inputIds: [5], completionIds: [6, 7], prompt }]);
    expect(score.tokenLogProbs).toHaveLength(2);
    expect(score.logLikelihood).toBeLessThan(0);
  });
});

describe("a prefix adapter where another kind is needed", () => {
  it("inspect refuses it, naming --adapter", async () => {
    const { inspect } = await import("../../src/workflows.js");
    const error = await inspect({ model: modelDir("llama"), adapter: adapterDir("llama", "prefix_tuning"), onWarning: () => {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SoftpromptError);
    expect((error as SoftpromptError).place.field).toBe("--adapter");
    expect((error as SoftpromptError).message).toMatch(/prefix adapter .* inspect takes prompt-tuning adapters/);
  });
});
