// Prompt transfer (SPoT, Vu et al. 2022): --init-from starts a new prompt from a trained adapter of the
// same model — prompt tuning from any prompt, multi-task prompt tuning from another multi-task adapter
// (its tasks' average, one task, or its shared prompt) or from a single prompt (each task starts there).
// An adapter of another width, virtual-token count or rank, or a task it lacks, is refused naming it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, type Model } from "../../src/models/index.js";
import { BASE_FINGERPRINT, baseFingerprint, loadAdapter, saveAdapter } from "../../src/peft/adapter.js";
import type { MethodContext, Params, PeftMethod } from "../../src/peft/method.js";
import { promptTuning } from "../../src/peft/prompt-tuning/index.js";
import { multitaskPromptTuning as mpt } from "../../src/peft/multitask/index.js";
import type { MultitaskConfig } from "../../src/peft/multitask/config.js";
import { COLS, ROWS, SHARED, taskPrompt } from "../../src/peft/multitask/model.js";
import { train } from "../../src/workflows.js";
import { SoftpromptError } from "../../src/util/errors.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const DATA = fileURLToPath(new URL("../../examples/data/reverse.train.jsonl", import.meta.url));

let model: Model;
let ctx: MethodContext;
const dir = mkdtempSync(join(tmpdir(), "softprompt-transfer-"));
const sources = { prompt: join(dir, "prompt"), mpt: join(dir, "mpt") };

/** A method's fresh adapter for the tiny model, saved as the trainer saves it (with the base fingerprint). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function makeAdapter(method: PeftMethod<any, any>, settings: object, out: string, change?: (params: Params) => void): Promise<void> {
  const options = method.options.parse(settings);
  const params = await method.initParams(options, ctx);
  change?.(params);
  const metadata = { [BASE_FINGERPRINT]: baseFingerprint(model.lm.weights.tensor(model.lm.embeddingName).data) };
  await saveAdapter(out, { method, config: method.makeConfig(options, ctx), params, metadata });
}

const options = (method: { options: { parse(x: unknown): unknown } }, settings: object) => method.options.parse(settings) as never;

beforeAll(async () => {
  model = await loadModel(MODEL);
  ctx = { lm: model.lm, tokenizer: model.tokenizer, baseModelName: MODEL, seed: 11 };
  await makeAdapter(promptTuning, { numVirtualTokens: 6 }, sources.prompt);
  // Two source tasks whose factors differ (PEFT's init scale would make every task's prompt nearly zero).
  await makeAdapter(mpt, { numVirtualTokens: 6, numRanks: 2, tasks: ["reverse", "sort"] }, sources.mpt, (params) => {
    for (const name of [COLS, ROWS]) params.get(name)!.data.forEach((x, i, data) => (data[i] = x * 25 + 0.1));
  });
});
afterAll(() => rmSync(dir, { recursive: true }));

describe("prompt transfer with --init-from", () => {
  it("prompt tuning starts from another adapter's prompt (initFrom alone means init adapter)", async () => {
    const source = await loadAdapter(sources.prompt);
    for (const settings of [{ initFrom: sources.prompt }, { init: "adapter", initFrom: sources.prompt }]) {
      const params = await promptTuning.initParams(options(promptTuning, { numVirtualTokens: 6, ...settings }), ctx);
      expect(params.get("prompt")!.data).toEqual(source.params.get("prompt")!.data);
    }
    const output = join(dir, "prompt-run");
    const run = await train({ model: MODEL, data: DATA, output, steps: 1, numVirtualTokens: 6, initFrom: sources.prompt });
    expect(run.steps).toBe(1);
    expect((await loadAdapter(output)).config).toMatchObject({ prompt_tuning_init: "RANDOM", prompt_tuning_init_text: null });
  });

  it("multi-task prompt tuning from a single prompt: every new task starts at that prompt", async () => {
    const source = (await loadAdapter(sources.prompt)).params.get("prompt")!.data;
    const settings = { numVirtualTokens: 6, tasks: ["a", "b", "c"], initFrom: sources.prompt };
    const config = mpt.makeConfig(options(mpt, settings), ctx) as MultitaskConfig;
    const params = await mpt.initParams(options(mpt, settings), ctx);
    expect(params.get(SHARED)!.data).toEqual(source);
    for (const t of [0, 1, 2]) expect(taskPrompt(config, params, t)).toEqual(source);
    expect(config.prompt_tuning_init).toBe("RANDOM"); // PEFT would re-read the source to build the module
  });

  it("multi-task prompt tuning from a multi-task adapter: its tasks' average, one task, or its shared prompt", async () => {
    const source = await loadAdapter(sources.mpt);
    const sourceConfig = source.config as MultitaskConfig;
    const base = { numVirtualTokens: 6, numRanks: 2, tasks: ["new"], initFrom: sources.mpt };

    const exact = await mpt.initParams(options(mpt, { ...base, promptTuningInitTask: "sort", promptTuningInit: "exact_source_task" }), ctx);
    const newConfig = mpt.makeConfig(options(mpt, base), ctx) as MultitaskConfig;
    expect(taskPrompt(newConfig, exact, 0)).toEqual(taskPrompt(sourceConfig, source.params, 1));

    const average = await mpt.initParams(options(mpt, base), ctx); // initFrom alone: the average task
    const mean = (name: string) => {
      const data = source.params.get(name)!.data;
      const half = data.length / 2;
      return Float32Array.from(data.subarray(0, half), (x, i) => x / 2 + data[half + i] / 2);
    };
    expect(average.get(COLS)!.data).toEqual(mean(COLS));
    expect(average.get(ROWS)!.data).toEqual(mean(ROWS));

    const shared = await mpt.initParams(options(mpt, { ...base, promptTuningInit: "only_source_shared" }), ctx);
    expect(shared.get(SHARED)!.data).toEqual(source.params.get(SHARED)!.data);
    expect(shared.get(COLS)!.data).not.toEqual(average.get(COLS)!.data);
  });
});

describe("prompt transfer: bad input", () => {
  const errorOf = async (p: unknown) => Promise.resolve(p).then(() => undefined, (e: unknown) => e as SoftpromptError);

  it("an adapter of another width, another length, another rank, or a task it lacks", async () => {
    const narrow = join(dir, "narrow");
    const lm32 = { config: { hiddenSize: 32, numHeads: 4, numLayers: 2 } } as never;
    const narrowOptions = options(promptTuning, { numVirtualTokens: 6 });
    await saveAdapter(narrow, { method: promptTuning, config: promptTuning.makeConfig(narrowOptions, { ...ctx, lm: lm32 }), params: new Map([["prompt", { shape: [6, 32], data: new Float32Array(6 * 32) }]]) });
    const wide = await errorOf(promptTuning.initParams(options(promptTuning, { numVirtualTokens: 6, initFrom: narrow }), ctx));
    expect(wide).toBeInstanceOf(SoftpromptError);
    expect(wide!.place).toMatchObject({ file: narrow, field: "initFrom" });
    expect(wide!.message).toMatch(/token_dim is 32, the model's hidden size 64/);

    const length = await errorOf(promptTuning.initParams(options(promptTuning, { numVirtualTokens: 8, initFrom: sources.prompt }), ctx));
    expect(length!.place.field).toBe("numVirtualTokens");
    expect(length!.message).toMatch(/has 6 virtual tokens, the new prompt 8; set numVirtualTokens to 6/);

    const rank = await errorOf(mpt.initParams(options(mpt, { numVirtualTokens: 6, numRanks: 3, tasks: ["x"], initFrom: sources.mpt }), ctx));
    expect(rank!.place.field).toBe("numRanks");
    const task = await errorOf(mpt.initParams(options(mpt, { numVirtualTokens: 6, numRanks: 2, tasks: ["x"], initFrom: sources.mpt, promptTuningInit: "exact_source_task", promptTuningInitTask: "copy" }), ctx));
    expect(task!.place.field).toBe("promptTuningInitTask");
    expect(task!.message).toMatch(/task "copy" is not one of this adapter's tasks: reverse, sort/);
  });

  it("init options that contradict each other are named", async () => {
    await expect(train({ model: MODEL, data: DATA, output: join(dir, "x"), init: "text", initText: "reverse", initFrom: sources.prompt })).rejects.toThrow(/initFrom starts the prompt from an adapter, init "text" from words/);
    await expect(train({ model: MODEL, data: DATA, output: join(dir, "x"), init: "adapter" })).rejects.toThrow(/init "adapter" needs initFrom/);
    await expect(train({ model: MODEL, data: DATA, output: join(dir, "x"), method: "mpt", promptTuningInit: "average_source_tasks" })).rejects.toThrow(/promptTuningInit "average_source_tasks" needs initFrom/);
    await expect(train({ model: MODEL, data: DATA, output: join(dir, "x"), method: "mpt", promptTuningInit: "magic" })).rejects.toThrow(/promptTuningInit/);
  });
});
