// P-tuning learns a held-out task of the tiny example model (reverse, no tag) through the one trainer,
// with either encoder: ≥ 95% exact match on 100 held-out inputs where no prompt gets 5%, base weights
// bit-identical. The adapter holds what PEFT saves (the encoder's output), the run's checkpoint the
// encoder itself, so a run resumes and a new run starts from it (--init-from); and bad input is named.
import { describe, expect, it } from "vitest";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { loadModel, type Model } from "../../src/models/index.js";
import { readExamples, tokenizeExamples } from "../../src/data/index.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { trainAdapter } from "../../src/train/trainer.js";
import { evaluateTask } from "../../src/eval/task.js";
import { loadSoftPrompt, train } from "../../src/workflows.js";
import { loadAdapter, saveAdapter } from "../../src/peft/adapter.js";
import { pTuning, pTuningPrompt } from "../../src/peft/p-tuning/index.js";
import { type PTuningConfig, pTuningOptionsSchema } from "../../src/peft/p-tuning/config.js";
import { SafetensorsFile } from "../../src/formats/safetensors.js";
import { SoftpromptError } from "../../src/util/errors.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const data = (name: string) => fileURLToPath(new URL(`../../examples/data/${name}.jsonl`, import.meta.url));
const tempDir = () => mkdtempSync(join(tmpdir(), "softprompt-ptuning-"));

const weightsChecksum = (model: Model) => {
  const h = createHash("sha256");
  for (const name of model.lm.weights.names()) {
    const a = model.lm.weights.tensor(name).data;
    h.update(name).update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  return h.digest("hex");
};

/** Train P-tuning on reverse (untagged) with the model in memory into `output`; evaluate the saved adapter held out. */
async function trainReverse(settings: Record<string, unknown>, output: string) {
  const model = await loadModel(MODEL);
  const before = weightsChecksum(model);
  const tokenize = async (name: string) => tokenizeExamples(await readExamples(data(name)), model.tokenizer, { maxLength: 64 }).items;
  const config = parseTrainConfig({ method: "ptuning", steps: 200, lr: 0.01, evalEvery: 50, ...settings });
  const result = await trainAdapter({ lm: model.lm, tokenizer: model.tokenizer, baseModelName: MODEL, train: await tokenize("reverse.train"), valid: await tokenize("reverse.valid"), config, outputDir: output });
  const loaded = await loadSoftPrompt(output, model, MODEL);
  const examples = await readExamples(data("reverse.valid"));
  const soft = await evaluateTask(model.lm, model.tokenizer, examples, { kind: "soft", adapter: loaded.adapter, prompt: loaded.prompt });
  const none = await evaluateTask(model.lm, model.tokenizer, examples, { kind: "none" });
  return { soft, none, loaded, result, unchanged: weightsChecksum(model) === before };
}

async function checkpointTensors(run: string): Promise<Map<string, Float32Array>> {
  const file = await SafetensorsFile.open(join(run, "checkpoint", "params.safetensors"));
  try {
    return new Map(await Promise.all(file.tensorNames().map(async (n) => [n, await file.readFloat32(n)] as const)));
  } finally {
    await file.close();
  }
}

describe("P-tuning learns reverse on the tiny example model", () => {
  it("--method ptuning (MLP encoder): ≥ 95% held out, base weights unchanged; the adapter is the encoder's output, the checkpoint the encoder", async () => {
    const output = tempDir();
    const { soft, none, loaded, result, unchanged } = await trainReverse({ numVirtualTokens: 10 }, output);
    expect(soft.examples).toBe(100);
    expect(soft.accuracy).toBeGreaterThanOrEqual(0.95);
    expect(none.accuracy).toBeLessThan(0.5);
    expect(unchanged).toBe(true);
    expect([...result.params.keys()]).toEqual(["embedding.weight", "mlp_head.0.weight", "mlp_head.0.bias", "mlp_head.2.weight", "mlp_head.2.bias", "mlp_head.4.weight", "mlp_head.4.bias"]);
    expect([...loaded.adapter.params.keys()]).toEqual(["prompt_embeddings"]);
    expect(loaded.adapter.config).toMatchObject({ peft_type: "P_TUNING", encoder_reparameterization_type: "MLP", encoder_hidden_size: 64, num_virtual_tokens: 10 });
    // The checkpoint holds the last step's encoder; its output is the last adapter's prompt.
    const saved = await checkpointTensors(output);
    expect([...saved.keys()].sort()).toEqual([...result.params.keys()].sort());
    for (const [name, p] of result.params) expect(saved.get(name), name).toEqual(p.data);
    const last = await loadAdapter(join(output, "last"));
    expect(last.params.get("prompt_embeddings")!.data).toEqual(pTuningPrompt(last.config as PTuningConfig, result.params));
    rmSync(output, { recursive: true });
  });

  it("--encoder-reparameterization-type lstm: ≥ 95% held out, base weights unchanged", async () => {
    const output = tempDir();
    const { soft, loaded, result, unchanged } = await trainReverse({ numVirtualTokens: 8, encoderReparameterizationType: "lstm", encoderHiddenSize: 32, encoderNumLayers: 1 }, output);
    expect(soft.accuracy).toBeGreaterThanOrEqual(0.95);
    expect(unchanged).toBe(true);
    expect(result.params.get("lstm_head.weight_ih_l0_reverse")!.shape).toEqual([128, 64]);
    expect(loaded.adapter.config).toMatchObject({ encoder_reparameterization_type: "LSTM", encoder_hidden_size: 32, encoder_num_layers: 1 });
    rmSync(output, { recursive: true });
  });
});

describe("P-tuning runs continue and start from one another", () => {
  const settings = { model: MODEL, data: data("reverse.train"), valid: data("reverse.valid"), method: "ptuning", numVirtualTokens: 6, encoderHiddenSize: 16, lr: 0.01, evalEvery: 5, saveEvery: 5 };

  it("a run resumes from its checkpoint (the encoder) bit for bit", async () => {
    const [whole, part] = [tempDir(), tempDir()];
    // A constant rate, so that 5 steps extended to 10 follow the schedule of 10 straight steps.
    const straight = await train({ ...settings, decay: "constant", output: whole, steps: 10 });
    await train({ ...settings, decay: "constant", output: part, steps: 5 });
    const resumed = await train({ ...settings, decay: "constant", output: part, steps: 10, resume: true });
    expect(resumed.steps).toBe(10);
    for (const [name, p] of straight.params) expect(resumed.params.get(name)!.data, name).toEqual(p.data);
    rmSync(whole, { recursive: true });
    rmSync(part, { recursive: true });
  });

  it("--init-from a run starts from its checkpoint's encoder; from an adapter alone, from its prompt as the encoder's input", async () => {
    const run = tempDir();
    const first = await train({ ...settings, output: run, steps: 5 });
    const model = await loadModel(MODEL);
    const ctx = { lm: model.lm, tokenizer: model.tokenizer, baseModelName: MODEL, seed: 3 };
    const options = (extra: object) => pTuningOptionsSchema.parse({ numVirtualTokens: 6, encoderHiddenSize: 16, ...extra });

    const fromRun = await pTuning.initParams(options({ initFrom: run }), ctx);
    for (const [name, p] of first.params) expect(fromRun.get(name)!.data, name).toEqual(p.data);

    // A folder with only the adapter (as PEFT would have it): its prompt enters the encoder, the rest is drawn.
    const adapterOnly = tempDir();
    for (const f of ["adapter_config.json", "adapter_model.safetensors"]) cpSync(join(run, f), join(adapterOnly, f));
    const fromAdapter = await pTuning.initParams(options({ initFrom: adapterOnly }), ctx);
    expect(fromAdapter.get("embedding.weight")!.data).toEqual((await loadAdapter(run)).params.get("prompt_embeddings")!.data);
    expect(fromAdapter.get("mlp_head.0.weight")!.data).toEqual((await pTuning.initParams(options({}), ctx)).get("mlp_head.0.weight")!.data);

    // Through train(): the new run's first step starts from the old run's encoder.
    const next = tempDir();
    const continued = await train({ ...settings, output: next, steps: 1, initFrom: run });
    expect(continued.steps).toBe(1);
    rmSync(run, { recursive: true });
    rmSync(adapterOnly, { recursive: true });
    rmSync(next, { recursive: true });
  });

  it("--init-from a run with another encoder, or an adapter of another width, is refused naming what differs", async () => {
    const run = tempDir();
    await train({ ...settings, output: run, steps: 2 });
    const err = await train({ ...settings, output: tempDir(), steps: 1, encoderHiddenSize: 8, initFrom: run }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SoftpromptError);
    expect((err as SoftpromptError).place).toMatchObject({ tensor: "mlp_head.0.weight", field: "initFrom" });
    expect((err as SoftpromptError).message).toMatch(/is \[16, 64\] in the run, \[8, 64\] here; train with the run's encoderReparameterizationType, encoderHiddenSize/);

    // An adapter made for a model of width 32.
    const narrow = tempDir();
    const config = pTuningOptionsSchema.parse({ numVirtualTokens: 6 });
    const lm32 = { config: { hiddenSize: 32, numHeads: 4, numLayers: 2 } } as never;
    await saveAdapter(narrow, { method: pTuning, config: pTuning.makeConfig(config, { lm: lm32, baseModelName: "other", tokenizer: undefined as never, seed: 0 }), params: new Map([["prompt_embeddings", { shape: [6, 32], data: new Float32Array(6 * 32) }]]) });
    await expect(train({ ...settings, output: tempDir(), steps: 1, initFrom: narrow })).rejects.toThrow(/token_dim is 32, the model's hidden size 64/);
    rmSync(run, { recursive: true });
    rmSync(narrow, { recursive: true });
  });
});

describe("P-tuning: bad input names the field and what is accepted", () => {
  const base = { model: MODEL, data: data("reverse.train"), output: "unused", method: "ptuning" };
  const usage = async (settings: Record<string, unknown>, field: string, message: RegExp) => {
    const err = await train({ ...base, ...settings }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SoftpromptError);
    expect((err as SoftpromptError).place.field).toBe(field);
    expect((err as SoftpromptError).message).toMatch(message);
  };

  it("an unknown encoder type, dropout, MLP layers, an option of another method", async () => {
    await usage({ encoderReparameterizationType: "gru" }, "encoderReparameterizationType", /"mlp"|"lstm"/);
    await usage({ encoderDropout: 0.1 }, "encoderDropout", /dropout in the prompt encoder is not supported; expected 0, got 0.1/);
    await usage({ encoderNumLayers: 3 }, "encoderNumLayers", /the mlp encoder has 2 hidden layers/);
    await expect(train({ ...base, init: "vocab" })).rejects.toThrow(/"init"/);
  });

  it("an adapter_config.json with an unknown encoder type or an unsupported field value", async () => {
    const dir = tempDir();
    const golden = fileURLToPath(new URL("../fixtures/reference/ptuning/adapters/llama.mlp", import.meta.url));
    cpSync(golden, dir, { recursive: true });
    const config = JSON.parse(readFileSync(join(golden, "adapter_config.json"), "utf8"));
    writeFileSync(join(dir, "adapter_config.json"), JSON.stringify({ ...config, encoder_reparameterization_type: "GRU" }));
    const err = await loadAdapter(dir).catch((e: unknown) => e);
    expect((err as SoftpromptError).place.field).toBe("encoder_reparameterization_type");
    expect((err as SoftpromptError).message).toMatch(/expected "MLP" or "LSTM", got "GRU"/);
    writeFileSync(join(dir, "adapter_config.json"), JSON.stringify({ ...config, num_transformer_submodules: 2 }));
    await expect(loadAdapter(dir)).rejects.toThrow(/num_transformer_submodules 2 is for encoder-decoder models; expected 1/);
    writeFileSync(join(dir, "adapter_config.json"), JSON.stringify({ ...config, task_type: "SEQ_2_SEQ_LM" }));
    await expect(loadAdapter(dir)).rejects.toThrow(/task_type/);
    rmSync(dir, { recursive: true });
  });
});
