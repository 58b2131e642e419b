/**
 * Teacher outputs on disk, so a rerun, a resume or a sweep over sizes never recomputes them: one
 * safetensors file per input set, its metadata recording what made it — the base model's fingerprint,
 * the teacher prompt's sha256, the inputs' sha256 and the teacher settings — and the sha256 of all four
 * as the key. A file made with anything else is refused, naming what differs (pass --overwrite to make
 * it again); a file is written whole or not at all (writeSafetensors is atomic). Hidden states
 * (`settings.hidden`) are one more tensor, [positions, hidden size].
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { concatArrays } from "../util/arrays.js";
import { fail } from "../util/errors.js";
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from "../formats/safetensors.js";
import type { TeacherRow, TeacherSettings, TeacherTargets } from "./teacher.js";

/** What teacher outputs depend on, each part with the flag that sets it. */
export interface TeacherKey {
  /** sha256 of the base model's token embeddings (the adapters' fingerprint). */
  model: string;
  /** sha256 of the teacher prompt's text. */
  prompt: string;
  /** sha256 of the input texts, in order. */
  inputs: string;
  settings: TeacherSettings;
}

/** Which flag changes each part of the key, for messages. */
export type KeyFlags = Record<keyof TeacherKey, string>;

const META = "softprompt.teacher";
/** The option behind a flag, or the first of a list ("--samples, --seed" → "samples"): errors name options (the CLI shows their flags). */
export const optionName = (flags: string) => flags.split(",")[0].trim().replace(/^--/, "").replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

export function keyDigest(key: TeacherKey): string {
  return sha256(JSON.stringify([key.model, key.prompt, key.inputs, key.settings]));
}

export function inputsDigest(texts: readonly string[]): string {
  return sha256(JSON.stringify(texts));
}

/** The cached targets at `path` if it holds the ones `key` describes; undefined when there is no file. */
export async function readTeacherCache(path: string, key: TeacherKey, flags: KeyFlags): Promise<TeacherTargets | undefined> {
  if (!existsSync(path)) return undefined;
  const file = await SafetensorsFile.open(path);
  try {
    let stored: TeacherKey & { k: number; vocabSize: number };
    try {
      stored = JSON.parse(file.metadata[META] ?? "") as typeof stored;
    } catch {
      return fail("file", `not a softprompt teacher cache (no ${META} metadata); remove it or pass --overwrite`, { file: path });
    }
    const differs = (Object.keys(flags) as (keyof TeacherKey)[]).filter((part) => JSON.stringify(stored[part]) !== JSON.stringify(key[part]));
    if (differs.length > 0) {
      const what = differs.map((part) => `another ${part === "settings" ? "teacher setting" : part} (${flags[part]})`).join(", ");
      fail("data", `the teacher cache was made with ${what}; remove it or pass --overwrite to compute the teacher's outputs again`, { file: path, field: optionName(flags[differs[0]]) });
    }
    const ints = async (name: string) => new Int32Array((await file.read(name)).slice().buffer);
    const inputLengths = await ints("input_lengths");
    const inputs = await ints("inputs");
    const lengths = await ints("continuation_lengths");
    const continuations = await ints("continuations");
    const topIndices = await ints("top_indices");
    const topLogp = await file.readFloat32("top_logp");
    const restLogp = file.has("rest_logp") ? await file.readFloat32("rest_logp") : new Float32Array(0);
    const hidden = file.has("hidden") ? await file.readFloat32("hidden") : undefined;
    const d = hidden === undefined ? 0 : file.info("hidden").shape[1];
    const { k } = stored;
    const rows: TeacherRow[] = [];
    let inAt = 0;
    let at = 0;
    for (let r = 0; r < lengths.length; r++) {
      const n = lengths[r];
      rows.push({
        input: [...inputs.subarray(inAt, inAt + inputLengths[r])],
        continuation: [...continuations.subarray(at, at + n)],
        topIndices: topIndices.slice(at * k, (at + n) * k),
        topLogp: topLogp.slice(at * k, (at + n) * k),
        restLogp: restLogp.length === 0 ? restLogp : restLogp.slice(at, at + n),
        ...(hidden === undefined ? {} : { hidden: hidden.slice(at * d, (at + n) * d) }),
      });
      inAt += inputLengths[r];
      at += n;
    }
    return { k, vocabSize: stored.vocabSize, rows };
  } finally {
    await file.close();
  }
}

export async function writeTeacherCache(path: string, key: TeacherKey, targets: TeacherTargets): Promise<void> {
  const { rows, k } = targets;
  const positions = rows.reduce((n, r) => n + r.continuation.length, 0);
  const tensor = (dtype: "I32" | "F32", shape: number[], data: Int32Array | Float32Array): TensorToWrite => ({ dtype, shape, data });
  const tensors: Record<string, TensorToWrite> = {
    input_lengths: tensor("I32", [rows.length], Int32Array.from(rows, (r) => r.input.length)),
    inputs: tensor("I32", [rows.reduce((n, r) => n + r.input.length, 0)], concatArrays(Int32Array, rows.map((r) => r.input))),
    continuation_lengths: tensor("I32", [rows.length], Int32Array.from(rows, (r) => r.continuation.length)),
    continuations: tensor("I32", [positions], concatArrays(Int32Array, rows.map((r) => r.continuation))),
    top_indices: tensor("I32", [positions, k], concatArrays(Int32Array, rows.map((r) => r.topIndices))),
    top_logp: tensor("F32", [positions, k], concatArrays(Float32Array, rows.map((r) => r.topLogp))),
  };
  if (k < targets.vocabSize) tensors.rest_logp = tensor("F32", [positions], concatArrays(Float32Array, rows.map((r) => r.restLogp)));
  if (key.settings.hidden) {
    const hidden = concatArrays(Float32Array, rows.map((r) => r.hidden!));
    tensors.hidden = tensor("F32", [positions, hidden.length / Math.max(1, positions)], hidden);
  }
  await writeSafetensors(path, tensors, { [META]: JSON.stringify({ ...key, k, vocabSize: targets.vocabSize }), "softprompt.teacher_key": keyDigest(key) });
}
