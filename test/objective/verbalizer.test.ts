// Training by cross-entropy over verbalizer words on the tiny model: rows "d … = " labelled by increment's
// first answer digit (d + 1), which the untagged model does not give by itself. A prompt started from the
// label words (--init labels with the verbalizer) and trained on the words alone classifies held-out rows.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { classifyData, train } from "../../src/workflows.js";
import { loadModel } from "../../src/models/index.js";
import { makeBatches, parseJsonl, tokenizeExamples } from "../../src/data/index.js";
import { Program } from "../../src/runtime/session.js";
import { DEFAULT_WEIGHTS, trainingObjective } from "../../src/objective/combine.js";
import { parseVerbalizer } from "../../src/eval/classify.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const NAMES = ["one", "two", "three"];
const inputs = (split: "train" | "valid") =>
  readFileSync(fileURLToPath(new URL(`../../examples/data/increment.${split}.jsonl`, import.meta.url)), "utf8").split("\n").filter(Boolean)
    .map((l) => (JSON.parse(l) as { prompt: string }).prompt).filter((p) => ["0", "1", "2"].includes(p[0]));
const labelled = (prompts: string[]) => prompts.map((prompt) => JSON.stringify({ prompt, label: NAMES[Number(prompt[0])] })).join("\n");

describe("verbalizer cross-entropy", () => {
  it("a dataset's loss is the same at batch sizes 1, 3 and 7, beside LM rows", async () => {
    const model = await loadModel(MODEL);
    const examples = parseJsonl(labelled(inputs("valid").slice(0, 5)) + '\n{"prompt":"reverse: 1 2 = ","completion":"2 1"}\n{"prompt":"copy: 3 = ","completion":"3"}', "rows.jsonl");
    const { items } = tokenizeExamples(examples, model.tokenizer, { maxLength: 64 });
    const verbalizer = parseVerbalizer({ one: ["1"], two: ["2", "2 2"], three: "3" }, "v.json");
    const objective = (await trainingObjective({ lm: model.lm, tokenizer: model.tokenizer, weights: DEFAULT_WEIGHTS, maxLength: 64, examples, items, verbalizer: { file: "v.json", words: verbalizer } }))!;
    const graph = objective.graph(model.lm);
    const program = await Program.compile({ loss: graph.loss, count: graph.count });
    const losses: number[] = [];
    for (const batchSize of [1, 3, 7]) {
      let total = 0;
      let units = 0;
      for (const batch of makeBatches(items, { batchSize, padTokenId: 0, padSide: "right" })) {
        const out = await program.run({ ...model.lm.weights.feeds(), ...objective.feeds(objective.expand!(batch), graph) });
        total += (out.loss.data as Float32Array)[0] * (out.count.data as Float32Array)[0];
        units += (out.count.data as Float32Array)[0];
      }
      losses.push(total / units);
    }
    expect(objective.settings).toMatchObject({ verbalizerWeight: 1, verbalizer: { one: ["1"], two: ["2", "2 2"], three: ["3"] } });
    for (const loss of losses) expect(loss).toBeCloseTo(losses[0], 4);
  });

  it("trains a prompt from the label words that classifies held-out rows", { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-verbalizer-"));
    try {
      const file = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));
      const verbalizer = file("v.json", JSON.stringify({ one: ["1"], two: ["2"], three: ["3"] }));
      const data = file("train.jsonl", labelled(inputs("train")));
      const valid = file("valid.jsonl", labelled(inputs("valid")));
      const output = join(dir, "out");
      await train({ model: MODEL, data, validFraction: 0, output, steps: 60, lr: 0.1, batchSize: 8, numVirtualTokens: 4, init: "labels", verbalizer });
      const config = JSON.parse(readFileSync(join(output, "adapter_config.json"), "utf8")) as { prompt_tuning_init_text: string };
      expect(config.prompt_tuning_init_text).toBe("1 2 3");
      const trained = await classifyData({ model: MODEL, data: valid, verbalizer, adapter: output });
      const none = await classifyData({ model: MODEL, data: valid, verbalizer });
      console.log(JSON.stringify({ heldOut: trained.examples, trained: trained.uncalibrated.accuracy, noPrompt: none.uncalibrated.accuracy }));
      expect(trained.uncalibrated.accuracy).toBeGreaterThanOrEqual(0.9);
      expect(none.uncalibrated.accuracy).toBeLessThan(0.6);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
