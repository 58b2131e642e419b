/**
 * A P-tuning run that starts where another ended (`initFrom`). PEFT's adapter keeps only the encoder's
 * output, so the encoder itself comes from the run's checkpoint, which holds every trained tensor; a
 * folder with only an adapter (a PEFT-written P-tuning adapter, or another method's prompt) gives its
 * prompt as the encoder's input table, with the rest of the encoder drawn fresh.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fail } from "../../util/errors.js";
import { SafetensorsFile } from "../../formats/safetensors.js";
import type { MethodContext, Params } from "../method.js";
import { loadSourceAdapter, promptFromAdapter } from "../prompt-tuning/init-from.js";
import { type EncoderSpec, INPUT, encoderShapes, initEncoder } from "./encoder.js";

/** Where a training run keeps its tensors (src/train/trainer.ts writes `<output>/checkpoint/params.safetensors`). */
const RUN_PARAMS = join("checkpoint", "params.safetensors");

export async function encoderFrom(dir: string, spec: EncoderSpec, ctx: MethodContext): Promise<Params> {
  const checkpoint = join(dir, RUN_PARAMS);
  // The run's adapter says which method and model the checkpoint belongs to.
  if (existsSync(checkpoint) && (await loadSourceAdapter(dir, ctx)).config.peft_type === "P_TUNING") return readEncoder(checkpoint, spec);
  const params = initEncoder(spec, ctx.seed);
  params.set(INPUT, { shape: [spec.numVirtual, spec.tokenDim], data: await promptFromAdapter(dir, ctx, spec.numVirtual) });
  return params;
}

async function readEncoder(path: string, spec: EncoderSpec): Promise<Params> {
  const file = await SafetensorsFile.open(path);
  const settings = "encoderReparameterizationType, encoderHiddenSize, encoderNumLayers and numVirtualTokens";
  try {
    const params: Params = new Map();
    for (const [name, shape] of encoderShapes(spec)) {
      if (!file.has(name)) fail("usage", `the run has no such tensor: it was trained with another encoder; train with its ${settings}`, { file: path, tensor: name, field: "initFrom" });
      const stored = file.info(name).shape;
      if (stored.join() !== shape.join()) {
        fail("usage", `is [${stored.join(", ")}] in the run, [${shape.join(", ")}] here; train with the run's ${settings}`, { file: path, tensor: name, field: "initFrom" });
      }
      params.set(name, { shape, data: await file.readFloat32(name) });
    }
    return params;
  } finally {
    await file.close();
  }
}
