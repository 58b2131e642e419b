// Multi-task prompt tuning learns several held-out tasks of the tiny example model at once, from one
// dataset whose rows name their task (the example data with a task field added on the fly): ≥ 95% exact
// match on each, base weights bit-identical. One generate batch mixes the tasks' prompts, each row as it
// is alone. Training, generation and evaluation name each task; bad tasks are refused naming them.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { loadModel, type Model } from "../../src/models/index.js";
import { datasetTasks, readExamples, tokenizeExamples } from "../../src/data/index.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { trainAdapter } from "../../src/train/trainer.js";
import { evaluateTask } from "../../src/eval/task.js";
import { generate } from "../../src/infer/generate.js";
import { evaluate, generateText, loadSoftPrompt, train } from "../../src/workflows.js";
import { loadAdapter } from "../../src/peft/adapter.js";
import { SoftpromptError } from "../../src/util/errors.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const exampleData = (name: string) => fileURLToPath(new URL(`../../examples/data/${name}.jsonl`, import.meta.url));
const TASKS = ["reverse", "sort"];

const weightsChecksum = (model: Model) => {
  const h = createHash("sha256");
  for (const name of model.lm.weights.names()) {
    const a = model.lm.weights.tensor(name).data;
    h.update(name).update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  return h.digest("hex");
};

/** The tasks' `split` files in one JSONL, each row with its task under `field` (rows interleaved). */
function mixedData(dir: string, split: "train" | "valid", field = "task", tasks = TASKS): string {
  const rows = tasks.map((task) => readFileSync(exampleData(`${task}.${split}`), "utf8").trim().split("\n").map((line) => JSON.stringify({ ...JSON.parse(line), [field]: task })));
  const lines = rows[0].flatMap((_, i) => rows.map((r) => r[i]));
  const path = join(dir, `mixed.${split}.jsonl`);
  writeFileSync(path, lines.join("\n") + "\n");
  return path;
}

describe("multi-task prompt tuning learns reverse and sort from one mixed dataset", () => {
  it("≥ 95% exact match on each task held out, base weights unchanged; one batch mixes the tasks' prompts", async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-mpt-"));
    const model = await loadModel(MODEL);
    const before = weightsChecksum(model);
    const read = (split: "train" | "valid") => readExamples(mixedData(dir, split), { taskField: "task" });
    const [trainSet, validSet] = [await read("train"), await read("valid")];
    const tokenize = (xs: typeof trainSet) => tokenizeExamples(xs, model.tokenizer, { maxLength: 64 }).items;
    const tasks = datasetTasks([...trainSet, ...validSet], "task");
    expect(tasks).toEqual(TASKS);
    const config = parseTrainConfig({ method: "mpt", tasks, steps: 300, lr: 0.1, evalEvery: 50 });
    const output = join(dir, "run");
    await trainAdapter({ lm: model.lm, tokenizer: model.tokenizer, baseModelName: MODEL, train: tokenize(trainSet), valid: tokenize(validSet), config, outputDir: output });
    expect(weightsChecksum(model)).toBe(before);
    expect((await loadAdapter(output)).config).toMatchObject({ peft_type: "MULTITASK_PROMPT_TUNING", num_tasks: 2, num_ranks: 1, task_names: TASKS });

    const prompts = new Map<string, Awaited<ReturnType<typeof loadSoftPrompt>>>();
    for (const task of TASKS) {
      const loaded = await loadSoftPrompt(output, model, MODEL, task);
      prompts.set(task, loaded);
      const heldOut = (await readExamples(exampleData(`${task}.valid`))).map((ex) => ({ ...ex, task }));
      const soft = await evaluateTask(model.lm, model.tokenizer, heldOut, { kind: "soft", adapter: loaded.adapter, prompt: loaded.prompt });
      expect(soft.examples).toBe(100);
      expect(soft.accuracy, task).toBeGreaterThanOrEqual(0.95);
    }
    // Two tasks' prompts of one adapter are two prompts (two cache entries), in one batch with a bare row.
    expect(prompts.get("reverse")!.prompt.id).not.toBe(prompts.get("sort")!.prompt.id);
    const input = "3 1 4 1 5 = ";
    const rows = [{ text: input, prompt: prompts.get("reverse")!.prompt }, { text: input, prompt: prompts.get("sort")!.prompt }, { text: input }];
    const together = await generate(model.lm, model.tokenizer, rows.map((r) => ({ ...r, maxNewTokens: 10 })));
    expect(together.slice(0, 2).map((g) => g.text!.trim())).toEqual(["5 1 4 1 3", "1 1 3 4 5"]);
    for (const [i, row] of rows.entries()) {
      const [alone] = await generate(model.lm, model.tokenizer, [{ ...row, maxNewTokens: 10 }]);
      expect(together[i].ids).toEqual(alone.ids);
    }
    rmSync(dir, { recursive: true });
  });
});

describe("multi-task prompt tuning through train, generate and eval", () => {
  const dir = mkdtempSync(join(tmpdir(), "softprompt-mpt-flow-"));
  const short = { model: MODEL, method: "mpt", numVirtualTokens: 4, steps: 2, lr: 0.1 };
  const errorOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as SoftpromptError);
  afterAll(() => rmSync(dir, { recursive: true }));

  it("--task-field names the field; the tasks are the data's, sorted; generate and eval take --task", async () => {
    const output = join(dir, "skill");
    const data = mixedData(dir, "train", "skill", ["sort", "reverse", "copy"]);
    await train({ ...short, data, output, taskField: "skill" });
    const adapter = await loadAdapter(output);
    expect(adapter.config).toMatchObject({ num_tasks: 3, task_names: ["copy", "reverse", "sort"] });
    const [generation] = await generateText({ model: MODEL, adapter: output, task: "copy", inputs: ["1 2 = "], maxNewTokens: 2 });
    expect(generation.ids.length).toBeGreaterThan(0);
    const report = await evaluate({ model: MODEL, adapter: output, task: "sort", data: exampleData("sort.valid") });
    expect(report.examples).toBe(100);
  });

  it("a task the adapter does not have, or no task, is refused naming the tasks it has", async () => {
    const output = join(dir, "two");
    await train({ ...short, data: mixedData(dir, "train"), output });
    const unknown = await errorOf(generateText({ model: MODEL, adapter: output, task: "increment", inputs: ["1 2 = "] }));
    expect(unknown).toBeInstanceOf(SoftpromptError);
    expect(unknown!.place.field).toBe("task");
    expect(unknown!.message).toMatch(/task "increment" is not one of this adapter's tasks: reverse, sort/);
    await expect(evaluate({ model: MODEL, adapter: output, task: "copy", data: exampleData("copy.valid") })).rejects.toThrow(/task "copy" is not one of this adapter's tasks/);
    const none = await errorOf(generateText({ model: MODEL, adapter: output, inputs: ["1 2 = "] }));
    expect(none!.message).toMatch(/this adapter holds a prompt per task \(reverse, sort\); name the task to use/);
  });

  it("training data with a row without a task, or a task outside --tasks, is refused naming the file and line", async () => {
    const untagged = exampleData("reverse.train");
    const err = await errorOf(train({ ...short, data: untagged, output: join(dir, "untagged") }));
    expect(err!.place).toMatchObject({ file: untagged, line: 1, field: "task" });
    expect(err!.message).toMatch(/names no task; multi-task training needs each row's task in the field "task"/);
    const mixed = mixedData(dir, "train");
    const outside = await errorOf(train({ ...short, data: mixed, output: join(dir, "outside"), tasks: ["reverse"] }));
    expect(outside!.place).toMatchObject({ file: mixed, line: 2, field: "task" });
    expect(outside!.message).toMatch(/task "sort" is not one of the tasks given: reverse/);
  });
});
