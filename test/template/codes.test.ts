// Learned control codes on the tiny model: {code:TASK} trained on mixed reverse/sort rows (each row's
// TASK field picks its span); switching --code TASK=… at inference switches the task performed, each
// value ≥ 95% exact match on held-out inputs, and the other value's answers are not given.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { evaluate, generateText, inspect, train } from "../../src/workflows.js";
import { type Model, loadModel } from "../../src/models/index.js";
import { readExamples } from "../../src/data/index.js";
import { evaluateTemplate, loadTemplateAdapter, type TemplateAdapter } from "../../src/template/index.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const data = (name: string) => fileURLToPath(new URL(`../../examples/data/${name}.jsonl`, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "softprompt-codes-"));
const output = join(dir, "run");

const tagged = (task: string) => readFileSync(data(`${task}.train`), "utf8").trim().split("\n").slice(0, 300).map((l) => JSON.stringify({ ...JSON.parse(l), TASK: task }));

let model: Model;
let adapter: TemplateAdapter;
beforeAll(async () => {
  model = await loadModel(MODEL);
  const reverse = tagged("reverse");
  const sort = tagged("sort");
  writeFileSync(join(dir, "train.jsonl"), reverse.flatMap((r, i) => [r, sort[i]]).join("\n") + "\n");
  writeFileSync(join(dir, "codes.tmpl"), "{code:TASK}{input}{answer}\n");
  await train({ model: MODEL, data: join(dir, "train.jsonl"), output, template: join(dir, "codes.tmpl"), steps: 200, evalEvery: 1000, validFraction: 0.05, lr: 0.1, seed: 1 });
  adapter = (await loadTemplateAdapter(output, model.tokenizer))!;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("a learned control code", () => {
  it("keeps one span per value of the field in the adapter", () => {
    const config = JSON.parse(readFileSync(join(output, "adapter_config.json"), "utf8"));
    expect(config.peft_type).toBe("SOFTPROMPT_TEMPLATE");
    expect(config.code_values).toEqual({ TASK: ["reverse", "sort"] });
    expect(config.num_virtual_tokens).toBe(16);
  });

  it.each([
    ["reverse", "reverse"],
    ["sort", "sort"],
  ])("--code TASK=%s performs %s: ≥ 95% exact match on held-out inputs; the other value gives the other task", async (code, task) => {
    const examples = await readExamples(data(`${task}.valid`));
    const right = await evaluateTemplate(model.lm, model.tokenizer, examples, adapter, { codes: new Map([["TASK", code]]), batchSize: 25 });
    const other = await evaluateTemplate(model.lm, model.tokenizer, examples, adapter, { codes: new Map([["TASK", code === "sort" ? "reverse" : "sort"]]), batchSize: 25 });
    expect(right.examples).toBe(100);
    expect(right.accuracy!).toBeGreaterThanOrEqual(0.95);
    expect(other.accuracy!).toBeLessThan(0.2);
  });

  it("generate --code switches the task of the same input", async () => {
    const run = (code: string) => generateText({ model: MODEL, adapter: output, inputs: ["3 1 4 2 = "], codes: [`TASK=${code}`], maxNewTokens: 8 });
    expect((await run("reverse"))[0].text).toBe("2 4 1 3");
    expect((await run("sort"))[0].text).toBe("1 2 3 4");
  });

  it("an unlearned value, a missing value and a malformed --code are errors that name the flag or the row", async () => {
    await expect(generateText({ model: MODEL, adapter: output, inputs: ["3 1 4 = "], codes: ["TASK=copy"] })).rejects.toThrow(/field "--code TASK": code TASK has no learned value "copy"; learned: "reverse", "sort"/);
    await expect(generateText({ model: MODEL, adapter: output, inputs: ["3 1 4 = "] })).rejects.toThrow(/field "TASK": the learned code \{code:TASK\} needs a value.*--code TASK=VALUE/);
    await expect(generateText({ model: MODEL, adapter: output, inputs: ["3 1 4 = "], codes: ["TASK"] })).rejects.toThrow(/field "--code": expected NAME=value, got "TASK"/);
    await expect(evaluate({ model: MODEL, data: data("sort.valid"), codes: ["TASK=sort"] })).rejects.toThrow(/field "--code": a control code needs a template adapter/);
    // What loads adapters as plain prompts (inspect, serve, export) refuses a template adapter by name.
    await expect(inspect({ model: MODEL, adapter: output })).rejects.toThrow(/a template adapter places its vectors among the tokens/);
  });
});
