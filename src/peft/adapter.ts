/**
 * PEFT's adapter folder: adapter_config.json + adapter_model.safetensors, exactly the layout
 * PEFT's save_pretrained writes, so adapters move between softprompt and Python both ways. Shared by
 * every method: the method supplies its config schema and its tensors (see method.ts).
 * Each file is written atomically (temporary file, then rename).
 */
import { promises as fsp, existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fail } from "../util/errors.js";
import { writeFileAtomic } from "../util/fs.js";
import { parseWith } from "../formats/json.js";
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from "../formats/safetensors.js";
import { type Param, type Params, type PeftConfigBase, type PeftMethod, methodByPeftType } from "./method.js";
// Built-in methods are registered before any adapter folder is read.
import "./methods.js";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";
/** The peft version whose format we write. */
export const PEFT_VERSION = "0.21.0";

export interface Adapter<Config extends PeftConfigBase = PeftConfigBase> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  method: PeftMethod<any, Config>;
  config: Config;
  /** The method's trainable tensors, by its own names. */
  params: Params;
  /** The safetensors header's metadata; ours adds the base model's fingerprint to PEFT's {"format": "pt"}. */
  metadata?: Record<string, string>;
}

/** Metadata key of the sha256 of the base model's token embeddings, which identifies the model exactly. */
export const BASE_FINGERPRINT = "softprompt.base_embeddings_sha256";

const fingerprints = new WeakMap<Float32Array, string>();
/** The fingerprint of a model: sha256 of its token-embedding table (computed once per table). */
export function baseFingerprint(embeddings: Float32Array): string {
  let digest = fingerprints.get(embeddings);
  if (digest === undefined) {
    digest = createHash("sha256").update(new Uint8Array(embeddings.buffer, embeddings.byteOffset, embeddings.byteLength)).digest("hex");
    fingerprints.set(embeddings, digest);
  }
  return digest;
}

/** sha256 of an adapter's tensors (name, shape, values): its version, e.g. as a cache key. */
export function paramsDigest(params: Params): string {
  const hash = createHash("sha256");
  for (const [name, p] of [...params].sort(([a], [b]) => (a < b ? -1 : 1))) {
    hash.update(`${name}[${p.shape.join(",")}]`).update(new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength));
  }
  return hash.digest("hex");
}

export async function saveAdapter(dir: string, adapter: Adapter): Promise<void> {
  const { method, config, params } = adapter;
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, p] of method.toPeftTensors(config, params)) {
    const size = p.shape.reduce((a, b) => a * b, 1);
    if (p.data.length !== size) fail("adapter", `${name} has ${p.data.length} values, expected [${p.shape.join(", ")}]`, { tensor: name });
    tensors[name] = { dtype: "F32", shape: p.shape, data: p.data };
  }
  // Each file is replaced atomically; the folder itself may hold other things (a training log, checkpoints).
  await fsp.mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, ADAPTER_WEIGHTS), tensors, { ...adapter.metadata, format: "pt" });
  const json = { peft_version: PEFT_VERSION, ...sortKeys(config) };
  await writeFileAtomic(join(dir, ADAPTER_CONFIG), JSON.stringify(json, null, 2) + "\n");
}

/** Read an adapter folder of any registered method; every tensor is checked finite. */
export async function loadAdapter(dir: string): Promise<Adapter> {
  const configPath = join(dir, ADAPTER_CONFIG);
  const weightsPath = join(dir, ADAPTER_WEIGHTS);
  for (const f of [configPath, weightsPath]) if (!existsSync(f)) fail("adapter", "missing: an adapter folder holds adapter_config.json and adapter_model.safetensors", { file: f });
  let raw: unknown;
  try {
    raw = JSON.parse(await fsp.readFile(configPath, "utf8"));
  } catch (err) {
    return fail("adapter", `not valid JSON: ${(err as Error).message}`, { file: configPath }, err);
  }
  const method = methodByPeftType((raw as { peft_type?: unknown } | null)?.peft_type, configPath);
  const config = parseWith(method.config, raw, "adapter", { file: configPath }) as PeftConfigBase;
  const file = await SafetensorsFile.open(weightsPath);
  try {
    const read = async (name: string): Promise<Param> => {
      if (!file.has(name)) fail("adapter", `no tensor ${name}`, { file: weightsPath });
      const data = await file.readFloat32(name);
      if (!data.every(Number.isFinite)) fail("adapter", "holds NaN or Inf values", { file: weightsPath, tensor: name });
      return { shape: [...file.info(name).shape], data };
    };
    const params = await method.fromPeftTensors(config, read, weightsPath, file.tensorNames());
    return { method, config, params, metadata: file.metadata };
  } finally {
    await file.close();
  }
}

export interface BaseModel {
  name: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  /** The model's token embeddings, for the exact fingerprint check. */
  embeddings: Float32Array;
}

/**
 * Refuse an adapter made for another model: by our fingerprint when the adapter has one (exact),
 * else by what PEFT records (width, layers, heads, and the base model's name). Returns warnings for
 * what could not be verified (PEFT records nothing that identifies the base model's weights).
 */
export function checkAdapterFits(adapter: { config: PeftConfigBase; metadata?: Record<string, string> }, model: BaseModel, where: string): string[] {
  const { token_dim, num_layers, num_attention_heads, base_model_name_or_path } = adapter.config;
  const mismatch = (field: string, message: string) => fail("adapter", message, { file: where, field });
  if (token_dim !== undefined && token_dim !== model.hiddenSize) mismatch("token_dim", `token_dim ${token_dim} does not match the model's hidden size ${model.hiddenSize}`);
  const fingerprint = adapter.metadata?.[BASE_FINGERPRINT];
  if (fingerprint !== undefined) {
    if (fingerprint !== baseFingerprint(model.embeddings)) {
      mismatch(BASE_FINGERPRINT, `trained on another base model (${base_model_name_or_path ?? "unnamed"}): its token embeddings differ from ${model.name}'s`);
    }
    return [];
  }
  if (num_layers != null && num_layers !== model.numLayers) mismatch("num_layers", `num_layers ${num_layers} does not match the model's ${model.numLayers}`);
  if (num_attention_heads != null && num_attention_heads !== model.numHeads) {
    mismatch("num_attention_heads", `num_attention_heads ${num_attention_heads} does not match the model's ${model.numHeads}`);
  }
  const lastPart = (s: string) => s.replace(/[\\/]+$/, "").split(/[\\/]/).pop()!.toLowerCase();
  if (base_model_name_or_path && lastPart(base_model_name_or_path) !== lastPart(model.name)) {
    mismatch("base_model_name_or_path", `made for base model "${base_model_name_or_path}", not "${model.name}"`);
  }
  const recorded: Record<string, unknown> = { token_dim, num_layers, num_attention_heads, base_model_name_or_path };
  const checked = Object.keys(recorded).filter((k) => recorded[k] != null);
  const unverified = ["the base model's weights", ...Object.keys(recorded).filter((k) => recorded[k] == null)];
  return [
    `${where}: written without a fingerprint of its base model (as PEFT writes adapters): ${checked.join(", ") || "nothing"} match ${model.name}, ` +
      `but ${unverified.join(", ")} could not be verified; if its outputs look wrong, check it was trained on this model`,
  ];
}

function sortKeys<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1))) as T;
}
