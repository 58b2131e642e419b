// The loss of a dataset is a property of the data and the model, not of how it is batched: identical at
// batch sizes 1, 3 and 12, left or right padded, with or without a soft prompt, and equal to
// transformers' on the golden models (numbers from test/fixtures/reference/make_text_loss.py).
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { loadTokenizer } from "../../src/tokenizer/index.js";
import { makeBatches, tokenizeExamples, type Example } from "../../src/data/index.js";
import { LossEvaluator } from "../../src/eval/loss.js";
import { loadAdapter } from "../../src/peft/adapter.js";
import { lossFeeds } from "../../src/objective/lm.js";
import { ARCHS, adapterDir, loadGoldenModel, modelDir } from "../helpers/golden.js";

const reference = JSON.parse(readFileSync(fileURLToPath(new URL("../fixtures/reference/text_loss.json", import.meta.url)), "utf8")) as {
  texts: string[];
  models: Record<string, { ids: number[][]; loss: number; tokens: number }>;
};
const examples: Example[] = reference.texts.map((text) => ({ kind: "text", text }));
const EOS = 511;

describe.each(ARCHS)("%s: dataset loss", (arch) => {
  it("tokenizes the texts as transformers does", async () => {
    const { items } = tokenizeExamples(examples, await loadTokenizer(modelDir(arch)), { maxLength: 128 });
    expect(items.map((x) => x.inputIds)).toEqual(reference.models[arch].ids);
  });

  it("without a prompt: the same at batch sizes 1, 3, 12, left or right padded, and equal to transformers'", async () => {
    const lm = await loadGoldenModel(arch);
    const { items } = tokenizeExamples(examples, await loadTokenizer(modelDir(arch)), { maxLength: 128 });
    const evaluator = await LossEvaluator.create(lm);
    const losses: number[] = [];
    for (const batchSize of [1, 3, 12]) {
      for (const padSide of ["left", "right"] as const) {
        const result = await evaluator.evaluate(makeBatches(items, { batchSize, padTokenId: EOS, padSide }));
        expect(result.tokens).toBe(reference.models[arch].tokens);
        losses.push(result.loss);
      }
    }
    for (const loss of losses) expect(Math.abs(loss - losses[0])).toBeLessThan(1e-5);
    expect(Math.abs(losses[0] - reference.models[arch].loss)).toBeLessThan(1e-4);
  });

  it("with a soft prompt: the same at batch sizes 1, 3, 12, left or right padded", async () => {
    const lm = await loadGoldenModel(arch);
    const adapter = await loadAdapter(adapterDir(arch, "prompt_tuning"));
    const { items } = tokenizeExamples(examples, await loadTokenizer(modelDir(arch)), { maxLength: 128 });
    const evaluator = await LossEvaluator.create(lm, adapter);
    const losses: number[] = [];
    for (const batchSize of [1, 3, 12]) {
      for (const padSide of ["left", "right"] as const) {
        const result = await evaluator.evaluate(makeBatches(items, { batchSize, padTokenId: EOS, padSide }), adapter.params);
        // With virtual tokens before it, a text's first token is predicted too.
        expect(result.tokens).toBe(reference.models[arch].tokens + items.length);
        losses.push(result.loss);
      }
    }
    for (const loss of losses) expect(Math.abs(loss - losses[0])).toBeLessThan(1e-5);
  });
});

describe("label positions", () => {
  it("never predict a row's first token from another row, and refuse labels on padding", () => {
    const batch = { inputIds: [5, 6, 7, 8, 9, 10], attentionMask: [1, 1, 1, 1, 1, 1], labels: [5, 6, 7, 8, 9, 10], batchSize: 2, seqLen: 3 };
    const feeds = lossFeeds(batch, 0);
    // Row 0 predicts its tokens 1, 2 from positions 0, 1; row 1 from flat positions 3, 4 — never 2 (row 0's last).
    expect([...(feeds.label_positions.data as BigInt64Array)].map(Number)).toEqual([0, 1, 3, 4]);
    expect([...(feeds.label_targets.data as BigInt64Array)].map(Number)).toEqual([6, 7, 9, 10]);
    expect(() => lossFeeds({ ...batch, attentionMask: [1, 1, 0, 1, 1, 1] }, 0)).toThrow(/row 0 has a label on padding at position 2/);
  });
});
