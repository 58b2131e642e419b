// Prefix tuning and Cartridges learn a held-out task of the tiny example model (reverse, no tag) through
// the one trainer: ≥ 95% exact match on 100 held-out inputs where no prompt gets 5%, the base weights
// bit-identical afterwards, a cartridge's frozen row never moved.
import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { loadModel, type Model } from "../../src/models/index.js";
import { readExamples, tokenizeExamples } from "../../src/data/index.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { trainAdapter } from "../../src/train/trainer.js";
import { evaluateTask } from "../../src/eval/task.js";
import { loadSoftPrompt } from "../../src/workflows.js";
import { cartridge } from "../../src/peft/cartridge/index.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const data = (name: string) => fileURLToPath(new URL(`../../examples/data/${name}.jsonl`, import.meta.url));

const weightsChecksum = (model: Model) => {
  const h = createHash("sha256");
  for (const name of model.lm.weights.names()) {
    const a = model.lm.weights.tensor(name).data;
    h.update(name).update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  return h.digest("hex");
};

/** Train `settings` on reverse (untagged) with the model in memory, then evaluate the saved adapter on the held-out set. */
async function trainReverse(settings: Record<string, unknown>) {
  const model = await loadModel(MODEL);
  const before = weightsChecksum(model);
  const tokenize = async (name: string) => tokenizeExamples(await readExamples(data(name)), model.tokenizer, { maxLength: 64 }).items;
  const output = mkdtempSync(join(tmpdir(), "softprompt-prefix-"));
  try {
    const config = parseTrainConfig({ steps: 200, lr: 0.1, ...settings });
    const result = await trainAdapter({ lm: model.lm, tokenizer: model.tokenizer, baseModelName: MODEL, train: await tokenize("reverse.train"), valid: await tokenize("reverse.valid"), config, outputDir: output });
    const loaded = await loadSoftPrompt(output, model, MODEL);
    const examples = await readExamples(data("reverse.valid"));
    const soft = await evaluateTask(model.lm, model.tokenizer, examples, { kind: "soft", adapter: loaded.adapter, prompt: loaded.prompt });
    const none = await evaluateTask(model.lm, model.tokenizer, examples, { kind: "none" });
    return { soft, none, loaded, result, unchanged: weightsChecksum(model) === before };
  } finally {
    rmSync(output, { recursive: true, force: true });
  }
}

describe("prefix methods learn reverse on the tiny example model", () => {
  it("--method prefix: ≥ 95% exact match held out, base weights unchanged", async () => {
    const { soft, none, loaded, unchanged } = await trainReverse({ method: "prefix", numVirtualTokens: 10 });
    expect(loaded.adapter.config.peft_type).toBe("PREFIX_TUNING");
    expect(loaded.prompt).toMatchObject({ numVirtual: 10 });
    expect(soft.examples).toBe(100);
    expect(soft.accuracy).toBeGreaterThanOrEqual(0.95);
    expect(none.accuracy).toBeLessThan(0.5);
    expect(unchanged).toBe(true);
  });

  it("--method prefix --prefix-projection: the MLP trains, the saved adapter holds only its output and still solves the task", async () => {
    const { soft, loaded, result, unchanged } = await trainReverse({ method: "prefix", numVirtualTokens: 10, prefixProjection: true, encoderHiddenSize: 32, lr: 0.01 });
    expect([...result.params.keys()].sort()).toEqual(["embedding.weight", "transform.0.bias", "transform.0.weight", "transform.2.bias", "transform.2.weight"]);
    expect([...loaded.adapter.params.keys()]).toEqual(["embedding.weight"]); // PEFT's prompt_embeddings: the folded table
    expect(loaded.adapter.config).toMatchObject({ prefix_projection: true, encoder_hidden_size: 32 });
    expect(soft.accuracy).toBeGreaterThanOrEqual(0.95);
    expect(unchanged).toBe(true);
  });

  it("--method cartridge from --init-text: ≥ 95%, its first (frozen) row exactly the text prefill's", async () => {
    const initText = "reverse: 1 2 3 4 5 6 7 8 9 = 9 8 7";
    const { soft, loaded, result, unchanged } = await trainReverse({ method: "cartridge", numVirtualTokens: 10, numFrozenTokens: 1, initText });
    expect(soft.accuracy).toBeGreaterThanOrEqual(0.95);
    expect(unchanged).toBe(true);
    const model = await loadModel(MODEL);
    const options = cartridge.options.parse({ numVirtualTokens: 10, numFrozenTokens: 1, initText });
    const init = await cartridge.initParams(options, { lm: model.lm, tokenizer: model.tokenizer, baseModelName: MODEL, seed: 0 });
    expect(result.params.get("frozen_embedding")!.data).toEqual(init.get("frozen_embedding")!.data);
    expect(loaded.adapter.params.get("frozen_embedding")!.data).toEqual(init.get("frozen_embedding")!.data);
    expect(result.params.get("trainable_embedding")!.data).not.toEqual(init.get("trainable_embedding")!.data);
  });
});

describe("resuming a prefix run", () => {
  it.each([
    ["prefix with projection (the MLP lives only in the checkpoint)", { method: "prefix", numVirtualTokens: 4, prefixProjection: true, lr: 0.01 }],
    ["cartridge (its frozen row stays out of the optimiser)", { method: "cartridge", numVirtualTokens: 4, numFrozenTokens: 1, initText: "reverse: 1 2 3 = 3 2 1" }],
  ])("%s continues bit for bit", async (_, settings) => {
    const model = await loadModel(MODEL);
    const items = tokenizeExamples((await readExamples(data("reverse.train"))).slice(0, 32), model.tokenizer, { maxLength: 64 }).items;
    // A constant learning rate, so a run of 2 steps is the first half of a run of 4 (a decay would depend on the total).
    const run = async (outputDir: string, steps: number, resume = false) =>
      trainAdapter({ lm: model.lm, tokenizer: model.tokenizer, baseModelName: MODEL, train: items, valid: [], config: parseTrainConfig({ ...settings, steps, saveEvery: 2, batchSize: 8, decay: "constant" }), outputDir, resume });
    const [whole, part] = [mkdtempSync(join(tmpdir(), "softprompt-prefix-whole-")), mkdtempSync(join(tmpdir(), "softprompt-prefix-part-"))];
    try {
      const full = await run(whole, 4);
      await run(part, 2);
      const resumed = await run(part, 4, true);
      expect(resumed.steps).toBe(4);
      expect([...resumed.params.keys()].sort()).toEqual([...full.params.keys()].sort());
      for (const [name, p] of full.params) expect(resumed.params.get(name)!.data, name).toEqual(p.data);
    } finally {
      rmSync(whole, { recursive: true, force: true });
      rmSync(part, { recursive: true, force: true });
    }
  });
});
