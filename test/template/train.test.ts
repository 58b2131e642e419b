// A mixed template trained end to end on the tiny model: the adapter folder keeps the template, reloads
// and evaluates to the trainer's own validation loss, and generation (the rendered input handed to the
// engine as embeddings) gives the tokens the training-time forward ranks first.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { evaluate, generateText, train, type TrainSummary } from "../../src/workflows.js";
import { type Model, loadModel } from "../../src/models/index.js";
import { makeBatches, readExamples, type Example } from "../../src/data/index.js";
import { paddingId } from "../../src/tokenizer/index.js";
import { Program } from "../../src/runtime/session.js";
import { forwardGraph, lossFeeds } from "../../src/objective/lm.js";
import { paramInputs } from "../../src/eval/loss.js";
import { evaluateTemplate, generateWithTemplate, loadTemplateAdapter, renderRows } from "../../src/template/index.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const source = (name: string) => fileURLToPath(new URL(`../../examples/data/${name}.jsonl`, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "softprompt-template-"));
const output = join(dir, "run");
const TEMPLATE = "{soft:intro:4}{digits}{soft:2}{soft:intro:4} = {answer}\n";

/** The task's rows with their digits as a field of their own (what the template's {digits} slot reads). */
function withDigits(name: string, count: number): string {
  const lines = readFileSync(source(name), "utf8").trim().split("\n").slice(0, count);
  const file = join(dir, `${name}.jsonl`);
  writeFileSync(file, lines.map((l) => { const r = JSON.parse(l); return JSON.stringify({ ...r, digits: r.prompt.replace(/ = $/, "") }); }).join("\n") + "\n");
  return file;
}

let model: Model;
let summary: TrainSummary;
let valid: string;
beforeAll(async () => {
  model = await loadModel(MODEL);
  writeFileSync(join(dir, "t.tmpl"), TEMPLATE);
  valid = withDigits("reverse.valid", 40);
  summary = await train({ model: MODEL, data: withDigits("reverse.train", 400), valid, output, template: join(dir, "t.tmpl"), steps: 120, evalEvery: 40, lr: 0.1, seed: 3 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("a template adapter", () => {
  it("keeps its template and table in the folder (its own peft_type: not prompt tuning's layout)", () => {
    const config = JSON.parse(readFileSync(join(output, "adapter_config.json"), "utf8"));
    expect(config.peft_type).toBe("SOFTPROMPT_TEMPLATE");
    expect(config.template).toBe(TEMPLATE.trimEnd()); // a file's final newline is not part of the template
    expect(config.num_virtual_tokens).toBe(6);
  });

  it("saved, reloaded and evaluated gives the trainer's validation loss; the eval command agrees", async () => {
    const loaded = (await loadTemplateAdapter(output, model.tokenizer))!;
    const examples = await readExamples(valid);
    const result = await evaluateTemplate(model.lm, model.tokenizer, examples, loaded, { batchSize: 16 });
    expect(Math.abs(result.loss - summary.bestValidLoss!)).toBeLessThan(1e-5 * Math.max(1, summary.bestValidLoss!));
    const report = await evaluate({ model: MODEL, data: valid, adapter: output });
    expect(report.loss).toBeCloseTo(result.loss, 6);
    expect(report.accuracy).toBe(result.accuracy);
  });

  it("generates what the training-time forward ranks first, token by token", async () => {
    const loaded = (await loadTemplateAdapter(output, model.tokenizer))!;
    const examples = (await readExamples(valid)).slice(0, 6);
    const { generations } = await generateWithTemplate(model.lm, model.tokenizer, loaded, examples, { maxNewTokens: 8 });
    // The generated answers as completions, through the training forward: each answer token must be its position's argmax.
    const answered = examples.map((ex, i): Example => ({ ...(ex as Extract<Example, { kind: "prompt" }>), completion: generations[i].text! }));
    const { items } = renderRows(loaded, answered, model.tokenizer, { maxLength: 64 });
    const batch = makeBatches(items, { batchSize: items.length, padTokenId: paddingId(model.tokenizer), padSide: "right" })[0];
    const adaptation = loaded.adapter!.method.adapt(loaded.adapter!.config, paramInputs(loaded.adapter!.params), model.lm);
    const g = forwardGraph(model.lm, adaptation);
    const program = await Program.compile({ logits: model.lm.lmHead(g.picked) });
    const table = loaded.adapter!.params.get("table")!;
    const feeds = lossFeeds(batch, 0);
    const out = await program.run({ ...model.lm.weights.feeds(), table: { data: table.data, dims: table.shape }, ...adaptation.feeds(batch), ...feeds });
    const V = model.config.vocabSize;
    const logits = out.logits.data as Float32Array;
    const targets = [...(feeds.label_targets.data as BigInt64Array)].map(Number);
    const argmax = targets.map((_, m) => { let best = 0; for (let v = 1; v < V; v++) if (logits[m * V + v] > logits[m * V + best]) best = v; return best; });
    expect(argmax).toEqual(targets);
    expect(generations.every((gen) => gen.text!.length > 0)).toBe(true);
  });

  it("generate reads the adapter's template (each input fills {input}: a slot it lacks is named); a different --template is refused", async () => {
    await expect(generateText({ model: MODEL, adapter: output, inputs: ["3 1 4 1 5"], maxNewTokens: 8 })).rejects.toThrow(/slot \{digits\} \(.*adapter_config.json \(template\):1, column 15\) has no value/);
    writeFileSync(join(dir, "other.tmpl"), "{soft:3}{input} = {answer}");
    await expect(generateText({ model: MODEL, adapter: output, inputs: ["3 1 4"], template: join(dir, "other.tmpl") })).rejects.toThrow(/trained with another template/);
  });
});
