// P-tuning against real PEFT 0.21 on the golden models (test/fixtures/reference/ptuning/make_ptuning.py):
// loss, logits and the gradient of every encoder tensor for the MLP and the bidirectional LSTM encoder;
// the saved output; PEFT-written adapters give PEFT's logits here; adapters we write give our loss in PEFT.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BASE_FINGERPRINT, baseFingerprint, loadAdapter, saveAdapter } from "../../src/peft/adapter.js";
import { pTuning, pTuningPrompt } from "../../src/peft/p-tuning/index.js";
import { type PTuningConfig, pTuningOptionsSchema } from "../../src/peft/p-tuning/config.js";
import { loadTokenizer } from "../../src/tokenizer/index.js";
import { ARCHS, type Arch, loadGoldenModel, modelDir, readTensors } from "../helpers/golden.js";
import { caseBatch, caseParams, expectClose, expectLogits, lossOf, runMethod } from "../helpers/method-case.js";

const REF = fileURLToPath(new URL("../fixtures/reference/ptuning/", import.meta.url));
const ENCODERS = { mlp: { encoderHiddenSize: 16 }, lstm: { encoderHiddenSize: 8, encoderNumLayers: 2 } } as const;
type Encoder = keyof typeof ENCODERS;
const NUM_VIRTUAL = 4;
/** Set to rewrite ours/ (then rerun make_ptuning.py for PEFT's losses on them). */
const UPDATE = process.env.UPDATE_REFERENCE === "1";

const caseOf = (arch: Arch, enc: Encoder) => readTensors(join(REF, "cases", `${arch}.${enc}.safetensors`));

/** An adapter of ours for the case: our own init (seed 7), saved as the trainer saves it. */
async function writeOurs(arch: Arch, enc: Encoder, dir: string): Promise<void> {
  const lm = await loadGoldenModel(arch);
  const ctx = { lm, tokenizer: await loadTokenizer(modelDir(arch)), baseModelName: "model", seed: 7 };
  const options = pTuningOptionsSchema.parse({ numVirtualTokens: NUM_VIRTUAL, encoderReparameterizationType: enc, ...ENCODERS[enc] });
  const metadata = { [BASE_FINGERPRINT]: baseFingerprint(lm.weights.tensor(lm.embeddingName).data) };
  await saveAdapter(dir, { method: pTuning, config: pTuning.makeConfig(options, ctx), params: await pTuning.initParams(options, ctx), metadata });
}

describe.each(ARCHS)("%s P-tuning matches PEFT", (arch) => {
  it.each(Object.keys(ENCODERS) as Encoder[])("%s encoder: loss, logits, the gradient of every encoder tensor, the saved output", async (enc) => {
    const lm = await loadGoldenModel(arch);
    const golden = await caseOf(arch, enc);
    const { config } = await loadAdapter(join(REF, "adapters", `${arch}.${enc}`)); // PEFT's config of the case
    const params = caseParams(golden);
    expect(params.size).toBe(enc === "mlp" ? 7 : 21);
    const out = await runMethod(lm, pTuning, config, params, caseBatch(golden), true);
    expect(Math.abs(lossOf(out) - (golden.get("loss")!.data as Float32Array)[0])).toBeLessThan(1e-5);
    expectLogits(out.logits.data as Float32Array, golden, NUM_VIRTUAL);
    for (const name of params.keys()) expectClose(out[`grad.${name}`].data as Float32Array, golden.get(`grad.${name}`)!.data as Float32Array, 1e-5, 1e-3, name);
    // The encoder computed on the host is what PEFT saves.
    expectClose(pTuningPrompt(config as PTuningConfig, params), golden.get("prompt_embeddings_as_saved")!.data as Float32Array, 1e-6, 1e-5);
  });

  it.each(Object.keys(ENCODERS) as Encoder[])("%s: the adapter PEFT wrote loads (its output only) and gives PEFT's loss and logits", async (enc) => {
    const lm = await loadGoldenModel(arch);
    const golden = await caseOf(arch, enc);
    const adapter = await loadAdapter(join(REF, "adapters", `${arch}.${enc}`));
    expect(adapter.method).toBe(pTuning);
    expect([...adapter.params.keys()]).toEqual(["prompt_embeddings"]);
    const out = await runMethod(lm, pTuning, adapter.config, adapter.params, caseBatch(golden), false);
    expect(Math.abs(lossOf(out) - (golden.get("loss")!.data as Float32Array)[0])).toBeLessThan(1e-5);
    expectLogits(out.logits.data as Float32Array, golden, NUM_VIRTUAL);
  });

  it.each(Object.keys(ENCODERS) as Encoder[])("%s: an adapter we write loads in PEFT and gives our loss there", async (enc) => {
    const name = `${arch}.${enc}`;
    const committed = join(REF, "ours", name);
    if (UPDATE) await writeOurs(arch, enc, committed);
    // The committed adapter is what this code writes now.
    const fresh = mkdtempSync(join(tmpdir(), "softprompt-ptuning-ours-"));
    await writeOurs(arch, enc, fresh);
    const [mine, theirs] = await Promise.all([loadAdapter(fresh), loadAdapter(committed)]);
    expect(readFileSync(join(fresh, "adapter_config.json"), "utf8")).toBe(readFileSync(join(committed, "adapter_config.json"), "utf8"));
    expect(mine.params.get("prompt_embeddings")!.data).toEqual(theirs.params.get("prompt_embeddings")!.data);
    rmSync(fresh, { recursive: true });

    const ours = JSON.parse(readFileSync(join(REF, "ours.json"), "utf8")) as Record<string, { loss: number }>;
    expect(ours[name], "PEFT's loss on our adapter: run make_ptuning.py").toBeDefined();
    const lm = await loadGoldenModel(arch);
    const out = await runMethod(lm, pTuning, theirs.config, theirs.params, caseBatch(await caseOf(arch, enc)), false);
    expect(Math.abs(lossOf(out) - ours[name].loss)).toBeLessThan(1e-5);
  });
});
