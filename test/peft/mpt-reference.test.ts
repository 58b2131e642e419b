// Multi-task prompt tuning against real PEFT 0.21 on the golden models (test/fixtures/reference/mpt/make_mpt.py):
// loss, logits and the gradient of the shared prompt and both task factors with each row on its own task;
// each task's prompt on the host; PEFT-written adapters give PEFT's logits here; ours give our loss in PEFT.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BASE_FINGERPRINT, baseFingerprint, loadAdapter, saveAdapter } from "../../src/peft/adapter.js";
import { multitaskPromptTuning as mpt } from "../../src/peft/multitask/index.js";
import { type MultitaskConfig, multitaskOptionsSchema } from "../../src/peft/multitask/config.js";
import { COLS, ROWS, multitaskAdaptation, taskPrompt } from "../../src/peft/multitask/model.js";
import { paramInputs } from "../../src/eval/loss.js";
import { Program } from "../../src/runtime/session.js";
import { loadTokenizer } from "../../src/tokenizer/index.js";
import { ARCHS, type Arch, loadGoldenModel, modelDir, readTensors } from "../helpers/golden.js";
import { caseBatch, caseParams, expectClose, expectLogits, lossOf, runMethod } from "../helpers/method-case.js";

const REF = fileURLToPath(new URL("../fixtures/reference/mpt/", import.meta.url));
const NUM_VIRTUAL = 4;
/** The case's rows use tasks 2 and 0 (PEFT's task_ids); PEFT-written adapters name their tasks by index. */
const ROW_TASKS = ["2", "0"];
const OUR_TASKS = ["alpha", "beta", "gamma"];
const OUR_ROW_TASKS = ["gamma", "alpha"];
/** Set to rewrite ours/ (then rerun make_mpt.py for PEFT's losses on them). */
const UPDATE = process.env.UPDATE_REFERENCE === "1";

const caseOf = (arch: Arch) => readTensors(join(REF, "cases", `${arch}.safetensors`));

/** An adapter of ours: our init (seed 7) with the task factors scaled up, as for the case, so the tasks differ. */
async function writeOurs(arch: Arch, dir: string): Promise<void> {
  const lm = await loadGoldenModel(arch);
  const ctx = { lm, tokenizer: await loadTokenizer(modelDir(arch)), baseModelName: "model", seed: 7 };
  const options = multitaskOptionsSchema.parse({ numVirtualTokens: NUM_VIRTUAL, numRanks: 2, tasks: OUR_TASKS });
  const params = await mpt.initParams(options, ctx);
  for (const name of [COLS, ROWS]) params.get(name)!.data.forEach((x, i, data) => (data[i] = x * 25));
  const metadata = { [BASE_FINGERPRINT]: baseFingerprint(lm.weights.tensor(lm.embeddingName).data) };
  await saveAdapter(dir, { method: mpt, config: mpt.makeConfig(options, ctx), params, metadata });
}

describe.each(ARCHS)("%s multi-task prompt tuning matches PEFT", (arch) => {
  it("each row on its task: loss, logits, the gradient of the shared prompt and both factors; each task's prompt", async () => {
    const lm = await loadGoldenModel(arch);
    const golden = await caseOf(arch);
    const { config } = await loadAdapter(join(REF, "adapters", arch)); // PEFT's config of the case
    const params = caseParams(golden);
    expect([...params.keys()].sort()).toEqual(["prefix_task_cols", "prefix_task_rows", "prompt_embeddings"]);
    const batch = caseBatch(golden, ROW_TASKS);
    const out = await runMethod(lm, mpt, config, params, batch, true);
    expect(Math.abs(lossOf(out) - (golden.get("loss")!.data as Float32Array)[0])).toBeLessThan(1e-5);
    expectLogits(out.logits.data as Float32Array, golden, NUM_VIRTUAL);
    for (const name of params.keys()) expectClose(out[`grad.${name}`].data as Float32Array, golden.get(`grad.${name}`)!.data as Float32Array, 1e-5, 1e-3, name);

    // The host's prompt of each task (what inference uses) is the graph's prompt of the rows on that task.
    const adaptation = multitaskAdaptation(config as MultitaskConfig, paramInputs(params));
    const program = await Program.compile({ prompts: adaptation.virtualEmbeds! });
    const feeds = Object.fromEntries([...params].map(([n, p]) => [n, { data: p.data, dims: p.shape }]));
    const rows = (await program.run({ ...feeds, ...adaptation.feeds(batch) })).prompts.data as Float32Array;
    const host = [...taskPrompt(config as MultitaskConfig, params, 2), ...taskPrompt(config as MultitaskConfig, params, 0)];
    expectClose(rows, host, 1e-6, 1e-5);
    expect(mpt.inferenceForm(config as MultitaskConfig, params, "2")).toEqual({ kind: "embeddings", embeddings: taskPrompt(config as MultitaskConfig, params, 2) });
  });

  it("the adapter PEFT wrote loads, names its tasks by index, and gives PEFT's loss and logits", async () => {
    const lm = await loadGoldenModel(arch);
    const golden = await caseOf(arch);
    const adapter = await loadAdapter(join(REF, "adapters", arch));
    expect(adapter.method).toBe(mpt);
    const out = await runMethod(lm, mpt, adapter.config, adapter.params, caseBatch(golden, ROW_TASKS), false);
    expect(Math.abs(lossOf(out) - (golden.get("loss")!.data as Float32Array)[0])).toBeLessThan(1e-5);
    expectLogits(out.logits.data as Float32Array, golden, NUM_VIRTUAL);
  });

  it("an adapter we write (with task names) loads in PEFT and gives our loss there", async () => {
    const committed = join(REF, "ours", arch);
    if (UPDATE) await writeOurs(arch, committed);
    const fresh = mkdtempSync(join(tmpdir(), "softprompt-mpt-ours-"));
    await writeOurs(arch, fresh);
    const [mine, theirs] = await Promise.all([loadAdapter(fresh), loadAdapter(committed)]);
    expect(readFileSync(join(fresh, "adapter_config.json"), "utf8")).toBe(readFileSync(join(committed, "adapter_config.json"), "utf8"));
    for (const [name, p] of mine.params) expect(p.data, name).toEqual(theirs.params.get(name)!.data);
    rmSync(fresh, { recursive: true });
    expect((theirs.config as MultitaskConfig).task_names).toEqual(OUR_TASKS);

    const ours = JSON.parse(readFileSync(join(REF, "ours.json"), "utf8")) as Record<string, { loss: number }>;
    expect(ours[arch], "PEFT's loss on our adapter: run make_mpt.py").toBeDefined();
    const lm = await loadGoldenModel(arch);
    const out = await runMethod(lm, mpt, theirs.config, theirs.params, caseBatch(await caseOf(arch), OUR_ROW_TASKS), false);
    expect(Math.abs(lossOf(out) - ours[arch].loss)).toBeLessThan(1e-5);
  });
});
