// The combined objective on the tiny example model: with default weights it is the LM loss; with every
// term on, a dataset's loss is the same at batch sizes 1, 2 and 5 (batches combine by their counts).
import { describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { loadModel, type Model } from "../../src/models/index.js";
import { makeBatches, parseJsonl, tokenizeExamples, type Batch } from "../../src/data/index.js";
import { Program } from "../../src/runtime/session.js";
import { lmObjective, type Objective } from "../../src/objective/lm.js";
import { DEFAULT_WEIGHTS, combinedObjective } from "../../src/objective/combine.js";
import { preparePairs } from "../../src/objective/pairs.js";
import { SoftpromptError } from "../../src/util/errors.js";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { train } from "../../src/workflows.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const ROWS = [
  { prompt: "reverse: 1 2 3 = ", completion: "3 2 1" },
  { prompt: "reverse: 4 5 = ", completion: "5 4", negative: true },
  { prompt: "sort: 3 1 2 = ", completion: "1 2 3", weight: 2.5 },
  { prompt: "copy: 7 0 = ", completion: "7 0", reward: -1.5 },
  { prompt: "increment: 1 8 = ", chosen: "2 9", rejected: "2 8 8" },
  { prompt: "sort: 4 1 = ", chosen: "1 4", rejected: "4 1", weight: 0.5 },
];
const rows = (...extra: object[]) => parseJsonl([...ROWS, ...extra].map((r) => JSON.stringify(r)).join("\n"), "rows.jsonl");

async function datasetLoss(model: Model, objective: Objective, items: Parameters<typeof makeBatches>[0], batchSize: number): Promise<number> {
  const graph = objective.graph(model.lm);
  const program = await Program.compile({ loss: graph.loss, count: graph.count });
  let total = 0;
  let units = 0;
  for (const batch of makeBatches(items, { batchSize, padTokenId: 0, padSide: "right" })) {
    const expanded: Batch = objective.expand?.(batch) ?? batch;
    const out = await program.run({ ...model.lm.weights.feeds(), ...objective.feeds(expanded, graph) });
    const count = (out.count.data as Float32Array)[0];
    total += (out.loss.data as Float32Array)[0] * count;
    units += count;
  }
  return total / units;
}

describe("the combined objective", () => {
  it("with default weights and no signals is the LM loss", async () => {
    const model = await loadModel(MODEL);
    const { items } = tokenizeExamples([rows()[0], rows()[4]], model.tokenizer, { maxLength: 64 });
    const lm = await datasetLoss(model, lmObjective, items, 2);
    expect(await datasetLoss(model, combinedObjective(DEFAULT_WEIGHTS), items, 2)).toBeCloseTo(lm, 5);
  });

  it("with every term on gives the same dataset loss at batch sizes 1, 2 and 5", async () => {
    const model = await loadModel(MODEL);
    const examples = rows();
    const { items } = tokenizeExamples(examples, model.tokenizer, { maxLength: 64 });
    const pairs = await preparePairs(examples, items, model.tokenizer, { maxLength: 64, reference: model.lm });
    expect(pairs.size).toBe(2);
    const tokenTerms = combinedObjective({ ...DEFAULT_WEIGHTS, unlikelihoodWeight: 0.5, dpoWeight: 2 }, pairs);
    const losses = await Promise.all([1, 2, 5].map((size) => datasetLoss(model, tokenTerms, items, size)));
    for (const loss of losses) expect(loss).toBeCloseTo(losses[0], 4);
    // DPO alone is a mean over pairs: with the model as its own reference, every pair's loss is log 2, times its weight (1 and 0.5).
    const pairItems = items.filter((x) => pairs.has(x));
    expect(await datasetLoss(model, combinedObjective({ ...DEFAULT_WEIGHTS, lmWeight: 0, dpoWeight: 1 }, pairs), pairItems, 1)).toBeCloseTo(((1 + 0.5) / 2) * Math.log(2), 5);
  });

  it("refuses weights that train nothing, a negative weight, and the verbalizer's weight without a verbalizer", () => {
    const message = (weights: Partial<typeof DEFAULT_WEIGHTS>) => {
      try {
        combinedObjective({ ...DEFAULT_WEIGHTS, ...weights });
      } catch (err) {
        return (err as SoftpromptError).message;
      }
      return "accepted";
    };
    expect(message({ lmWeight: 0 })).toBe('field "lmWeight": every term\'s weight is 0: nothing to train');
    expect(message({ dpoWeight: -1 })).toBe('field "dpoWeight": expected a finite number ≥ 0, got -1');
    expect(message({ verbalizerWeight: 1 })).toBe('field "--verbalizer-weight": the verbalizer\'s cross-entropy needs a verbalizer (--verbalizer FILE)');
  });

  it("checks the rows it adds against the model's context before training: a long rejected completion", async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-combined-context-"));
    try {
      const data = join(dir, "pairs.jsonl");
      writeFileSync(data, JSON.stringify({ prompt: "reverse: 1 2 = ", chosen: "2 1", rejected: Array(40).fill("1").join(" ") }));
      const err = await train({ model: MODEL, data, validFraction: 0, output: join(dir, "out"), steps: 1, numVirtualTokens: 20, maxLength: 60, unlikelihoodWeight: 1 }).catch((e: unknown) => e);
      expect((err as SoftpromptError).message).toMatch(/^field "--num-virtual-tokens": 20 virtual tokens \+ the longest example's \d+ tokens = \d+ positions, but the model has 64/);
      expect(existsSync(join(dir, "out", "checkpoint"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a DPO run on a row that is not a pair, naming its line", async () => {
    const model = await loadModel(MODEL);
    const examples = rows();
    const { items } = tokenizeExamples(examples, model.tokenizer, { maxLength: 64 });
    const err = await preparePairs(examples, items, model.tokenizer, { maxLength: 64, requireAll: "--dpo-weight" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SoftpromptError);
    expect((err as SoftpromptError).message).toBe('rows.jsonl:1, field "chosen": is not a preference pair; --dpo-weight trains on {"prompt","chosen","rejected"} rows only');
  });

  it("refuses a rejected completion that tokenizes to nothing, naming the field", async () => {
    const model = await loadModel(MODEL);
    const examples = rows({ prompt: "copy: 1 = ", chosen: "1", rejected: "\t" });
    const { items } = tokenizeExamples(examples, model.tokenizer, { maxLength: 64 });
    const err = await preparePairs(examples, items, model.tokenizer, { maxLength: 64 }).catch((e: unknown) => e);
    expect((err as SoftpromptError).place).toEqual({ file: "rows.jsonl", line: 7, field: "rejected" });
    expect((err as SoftpromptError).message).toBe('rows.jsonl:7, field "rejected": the rejected completion encodes to no tokens; expected text for the model to learn');
  });

  it("records its weights in the checkpoint: a resume with other weights is refused, naming the flag", async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-combined-"));
    try {
      const data = join(dir, "d.jsonl");
      writeFileSync(data, ROWS.map((r) => JSON.stringify(r)).join("\n"));
      const run = { model: MODEL, data, validFraction: 0, output: join(dir, "out"), steps: 2, batchSize: 2, numVirtualTokens: 2 };
      await train({ ...run, unlikelihoodWeight: 0.5, dpoWeight: 0 });
      const err = await train({ ...run, steps: 3, resume: true, unlikelihoodWeight: 0.25 }).catch((e: unknown) => e);
      expect((err as SoftpromptError).message).toContain("--unlikelihood-weight was 0.5, now 0.25");
      // Negative rows without the penalty would carry no term: refused before anything is written.
      const none = await train({ ...run, output: join(dir, "none") }).catch((e: unknown) => e);
      expect((none as SoftpromptError).message).toBe(`${data}:2, field "negative": the row is "negative" but --unlikelihood-weight is 0: set a weight for the penalty, or leave negative rows out`);
      expect(existsSync(join(dir, "none"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
