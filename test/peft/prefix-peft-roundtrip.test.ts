// PEFT's format both ways for prefix methods, checked with PEFT 0.21 itself (numbers made by
// test/fixtures/reference/make_prefix_reference.py): adapters we write are the files PEFT loaded and
// give PEFT's loss here; a cartridge initialised from a text prefill equals PEFT's, with PEFT's loss,
// logits and trainable gradient, its frozen rows given no gradient; PEFT's cartridge folder loads.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as o from "../../src/graph/ops.js";
import { grad } from "../../src/graph/autodiff.js";
import { Program } from "../../src/runtime/session.js";
import { loadModel } from "../../src/models/index.js";
import { loadAdapter } from "../../src/peft/adapter.js";
import { LossEvaluator, paramInputs } from "../../src/eval/loss.js";
import { lossFeeds, lossGraph } from "../../src/objective/lm.js";
import { cartridge } from "../../src/peft/cartridge/index.js";
import { OUR_ADAPTERS, OURS, type OurAdapter, writeOurAdapter } from "../fixtures/reference/prefix_ours.js";
import { ARCHS, type Arch, maxAbsDiff, modelDir } from "../helpers/golden.js";
import { SafetensorsFile } from "../../src/formats/safetensors.js";

const REFERENCE = fileURLToPath(new URL("../fixtures/reference/", import.meta.url));
const reference = JSON.parse(readFileSync(join(REFERENCE, "prefix_reference.json"), "utf8")) as {
  init_text: string;
  batch: Record<Arch, { input_ids: number[][]; attention_mask: number[][]; labels: number[][] }>;
  ours_in_peft: Record<Arch, Record<OurAdapter, { loss: number; peft_type: string }>>;
  cartridge_peft: Record<Arch, { loss: number }>;
};

function batchOf(arch: Arch) {
  const { input_ids, attention_mask, labels } = reference.batch[arch];
  return { inputIds: input_ids.flat(), attentionMask: attention_mask.flat(), labels: labels.flat(), batchSize: input_ids.length, seqLen: input_ids[0].length };
}

async function readTensors(path: string): Promise<Map<string, { data: Float32Array; shape: number[] }>> {
  const file = await SafetensorsFile.open(path);
  try {
    const entries = await Promise.all(file.tensorNames().map(async (n): Promise<[string, { data: Float32Array; shape: number[] }]> => [n, { data: await file.readFloat32(n), shape: [...file.info(n).shape] }]));
    return new Map(entries);
  } finally {
    await file.close();
  }
}

describe.each(ARCHS)("%s: prefix adapters in PEFT's format", (arch) => {
  it.each(Object.keys(OUR_ADAPTERS) as OurAdapter[])("our %s adapter is the file PEFT loaded, and gives PEFT's loss", async (name) => {
    const dir = mkdtempSync(join(tmpdir(), "sp-prefix-"));
    try {
      await writeOurAdapter(arch, name, dir);
      for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
        expect(readFileSync(join(dir, file)).equals(readFileSync(join(OURS, arch, name, file))), file).toBe(true);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const model = await loadModel(modelDir(arch));
    const adapter = await loadAdapter(join(OURS, arch, name));
    expect(adapter.method.peftType).toBe(reference.ours_in_peft[arch][name].peft_type);
    const { loss } = await (await LossEvaluator.create(model.lm, adapter)).evaluate([batchOf(arch)], adapter.params);
    expect(Math.abs(loss - reference.ours_in_peft[arch][name].loss)).toBeLessThan(1e-5);
  });

  it("a cartridge from a text prefill is PEFT's: the table, loss, logits and the trainable rows' gradient", async () => {
    const model = await loadModel(modelDir(arch));
    const peft = await readTensors(join(REFERENCE, "cartridge_peft", arch, "case.safetensors"));
    const options = cartridge.options.parse({ numVirtualTokens: 4, numFrozenTokens: 1, initText: reference.init_text });
    const ctx = { lm: model.lm, tokenizer: model.tokenizer, baseModelName: "model", seed: 0 };
    const config = cartridge.makeConfig(options, ctx);
    const params = await cartridge.initParams(options, ctx);
    expect(params.get("frozen_embedding")!.frozen).toBe(true);
    expect(params.get("trainable_embedding")!.frozen).toBeFalsy();

    const table = cartridge.toPeftTensors(config, params).get("prompt_embeddings")!;
    const init = peft.get("prompt_embeddings_init")!;
    expect(table.shape).toEqual(init.shape);
    expect(maxAbsDiff(table.data, init.data, [1, 1, init.data.length])).toBeLessThan(1e-5);

    // One graph as the trainer builds it: the frozen rows are an input, only the trainable ones differentiated.
    const inputs = paramInputs(params);
    const graph = lossGraph(model.lm, cartridge.adapt(config, inputs, model.lm));
    const [gTrainable] = grad(graph.loss, [inputs.get("trainable_embedding")!]);
    const logits = model.lm.lmHead(o.reshape(graph.hidden, [-1, model.config.hiddenSize]));
    const program = await Program.compile({ loss: graph.loss, logits, grad: gTrainable });
    const batch = batchOf(arch);
    const out = await program.run({
      ...model.lm.weights.feeds(),
      ...Object.fromEntries([...params].map(([n, p]) => [n, { data: p.data, dims: p.shape }])),
      ...lossFeeds(batch, graph),
    });
    expect(Math.abs((out.loss.data as Float32Array)[0] - reference.cartridge_peft[arch].loss)).toBeLessThan(1e-5);
    const wantLogits = peft.get("logits")!;
    expect(maxAbsDiff(out.logits.data as Float32Array, wantLogits.data, wantLogits.shape, (r, t) => batch.attentionMask[r * batch.seqLen + t] === 1)).toBeLessThan(1e-4);
    const want = peft.get("grad.trainable_embedding")!.data;
    const got = out.grad.data as Float32Array;
    expect(got.length).toBe(want.length);
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(1e-5 + 1e-3 * Math.abs(want[i]));
  });

  it("PEFT's cartridge folder loads with its first row frozen, has the keys we write, and gives PEFT's loss", async () => {
    const model = await loadModel(modelDir(arch));
    const dir = join(REFERENCE, "cartridge_peft", arch);
    const adapter = await loadAdapter(dir);
    expect(adapter.method).toBe(cartridge);
    expect(adapter.params.get("frozen_embedding")).toMatchObject({ shape: [1, 2 * 2 * model.config.numKvHeads * model.config.headDim], frozen: true });
    const ours = join(OURS, arch, "cartridge", "adapter_config.json");
    const keys = (path: string) => Object.keys(JSON.parse(readFileSync(path, "utf8"))).sort();
    expect(keys(ours)).toEqual(keys(join(dir, "adapter_config.json")));
    const { loss } = await (await LossEvaluator.create(model.lm, adapter)).evaluate([batchOf(arch)], adapter.params);
    expect(Math.abs(loss - reference.cartridge_peft[arch].loss)).toBeLessThan(1e-5);
  });
});
