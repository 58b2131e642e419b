// LoRA learns a held-out task of the tiny example model (reverse, no tag) through the one trainer: ≥ 95%
// exact match on 100 held-out inputs, unmerged (the engine) and merged alike, the base weights
// bit-identical afterwards; the CLI's LoRA flags reach the adapter, and bad ones are named.
import { describe, expect, it } from "vitest";
import { runCliJson } from "../helpers/cli.js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
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
import { isLoraPrompt } from "../../src/infer/lora.js";
import { mergeLora } from "../../src/peft/lora/merge.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MODEL = join(ROOT, "examples/models/tiny-tasks");
const data = (name: string) => join(ROOT, `examples/data/${name}.jsonl`);

const weightsChecksum = (model: Model) => {
  const h = createHash("sha256");
  for (const name of model.lm.weights.names()) {
    const a = model.lm.weights.tensor(name).data;
    h.update(name).update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  return h.digest("hex");
};

const cli = runCliJson;

describe("LoRA learns reverse on the tiny example model", () => {
  it("--method lora (q_proj, v_proj, r 8): ≥ 95% exact match held out, unmerged and merged; base weights unchanged", async () => {
    const model = await loadModel(MODEL);
    const before = weightsChecksum(model);
    const tokenize = async (name: string) => tokenizeExamples(await readExamples(data(name)), model.tokenizer, { maxLength: 64 }).items;
    const output = mkdtempSync(join(tmpdir(), "softprompt-lora-"));
    try {
      const config = parseTrainConfig({ method: "lora", steps: 200 });
      expect(config.lr).toBe(0.01); // LoRA's own default
      const result = await trainAdapter({ lm: model.lm, tokenizer: model.tokenizer, baseModelName: MODEL, train: await tokenize("reverse.train"), valid: await tokenize("reverse.valid"), config, outputDir: output });
      expect(result.params.size).toBe(2 * 2 * model.config.numLayers); // q_proj and v_proj per layer, each A and B
      const loaded = await loadSoftPrompt(output, model, MODEL);
      expect(loaded.adapter.config).toMatchObject({ peft_type: "LORA", r: 8, lora_alpha: 8, target_modules: ["q_proj", "v_proj"], fan_in_fan_out: false });
      expect(loaded.numVirtual).toBe(0);
      const examples = await readExamples(data("reverse.valid"));
      const unmerged = await evaluateTask(model.lm, model.tokenizer, examples, { kind: "soft", adapter: loaded.adapter, prompt: loaded.prompt });
      const none = await evaluateTask(model.lm, model.tokenizer, examples, { kind: "none" });
      if (!isLoraPrompt(loaded.prompt)) throw new Error("expected a LoRA adapter");
      const merged = await evaluateTask(mergeLora(model.lm, loaded.prompt.modules), model.tokenizer, examples, { kind: "none" });
      expect(unmerged.examples).toBe(100);
      expect(unmerged.accuracy).toBeGreaterThanOrEqual(0.95);
      expect(merged.accuracy).toBe(unmerged.accuracy);
      expect(Math.abs(merged.loss - unmerged.loss)).toBeLessThan(1e-4);
      expect(none.accuracy).toBeLessThan(0.5);
      expect(weightsChecksum(model)).toBe(before);
    } finally {
      rmSync(output, { recursive: true, force: true });
    }
  });
});

describe("softprompt CLI with --method lora", () => {
  const work = mkdtempSync(join(tmpdir(), "softprompt-lora-cli-"));
  const train = (extra: string[], out = join(work, "bad")) => cli(["train", "--model", MODEL, "--data", data("reverse.train"), "--output", out, "--method", "lora", "--steps", "2", ...extra]);

  it("flags named after PEFT's keys reach adapter_config.json; generate runs it; inspect refuses it", async () => {
    const out = join(work, "run");
    const r = await train(["--r", "4", "--lora-alpha", "16", "--target-modules", "q_proj", "--target-modules", "o_proj", "--use-rslora"], out);
    expect(r.code, r.stdout).toBe(0);
    const config = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"));
    expect(config).toMatchObject({ peft_type: "LORA", r: 4, lora_alpha: 16, target_modules: ["q_proj", "o_proj"], use_rslora: true, bias: "none", peft_version: "0.21.0" });
    const gen = await cli(["generate", "--model", MODEL, "--adapter", out, "--input", "3 1 4 = ", "--max-new-tokens", "3"]);
    expect(gen.code, gen.stdout).toBe(0);
    const inspect = await cli(["inspect", "--model", MODEL, "--adapter", out]);
    expect(inspect.code).not.toBe(0);
    expect(JSON.parse(inspect.stdout).error).toMatchObject({ field: "--adapter" });
    expect(JSON.parse(inspect.stdout).error.message).toMatch(/is a LoRA adapter \(low-rank weight updates\), not virtual-token embeddings: inspect takes prompt-tuning adapters/);
  });

  it.each([
    [["--target-modules", "c_attn"], "--target-modules", /\["c_attn"\] matches no module of this model; it has q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj \(e\.g\. model\.layers\.0\.self_attn\.q_proj\), or "all-linear"/],
    [["--r", "0"], "--r", /--r must be ≥ 1, got 0/],
    [["--r", "65", "--target-modules", "q_proj"], "--r", /rank 65 does not fit: it must be an integer from 1 to 64, the narrowest adapted layer's width/],
    [["--bias", "all"], "--bias", /Allowed choices are none/],
    [["--lora-dropout", "1"], "--lora-dropout", /--lora-dropout must be < 1, got 1/],
  ])("bad LoRA flags are named with what is accepted (%j)", async (extra, flag, message) => {
    const r = await train(extra);
    expect(r.code).not.toBe(0);
    const { error } = JSON.parse(r.stdout);
    expect(error.field).toBe(flag);
    expect(error.message).toMatch(message);
  });
});
