/**
 * PEFT's adapter folder: adapter_config.json + adapter_model.safetensors, exactly the layout
 * PEFT's save_pretrained writes, so adapters move between softprompt and Python both ways.
 * Each file is written atomically (temporary file, then rename).
 */
import { promises as fsp, existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fail } from "../util/errors.js";
import { parseWith } from "../formats/json.js";
import { writeFileAtomic } from "../util/fs.js";
import { SafetensorsFile, writeSafetensors } from "../formats/safetensors.js";
import { promptTuningConfigSchema, type PromptTuningConfig } from "./prompt-tuning/config.js";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";
/** The peft version whose format we write. */
export const PEFT_VERSION = "0.21.0";

export interface PromptAdapter {
  config: PromptTuningConfig;
  /** [numVirtualTokens, tokenDim] */
  embeddings: Float32Array;
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

export async function savePromptAdapter(dir: string, adapter: PromptAdapter): Promise<void> {
  const { config, embeddings } = adapter;
  const n = config.num_virtual_tokens;
  const d = config.token_dim;
  if (embeddings.length !== n * d) fail("adapter", `prompt has ${embeddings.length} values, expected ${n} × ${d}`);
  // Each file is replaced atomically; the folder itself may hold other things (a training log, checkpoints).
  await fsp.mkdir(dir, { recursive: true });
  const metadata = { ...adapter.metadata, format: "pt" };
  await writeSafetensors(join(dir, ADAPTER_WEIGHTS), { prompt_embeddings: { dtype: "F32", shape: [n, d], data: embeddings } }, metadata);
  const json = { peft_version: PEFT_VERSION, ...sortKeys(config) };
  await writeFileAtomic(join(dir, ADAPTER_CONFIG), JSON.stringify(json, null, 2) + "\n");
}

export async function loadPromptAdapter(dir: string): Promise<PromptAdapter> {
  const configPath = join(dir, ADAPTER_CONFIG);
  const weightsPath = join(dir, ADAPTER_WEIGHTS);
  for (const f of [configPath, weightsPath]) if (!existsSync(f)) fail("adapter", "missing: an adapter folder holds adapter_config.json and adapter_model.safetensors", { file: f });
  let raw: unknown;
  try {
    raw = JSON.parse(await fsp.readFile(configPath, "utf8"));
  } catch (err) {
    return fail("adapter", `not valid JSON: ${(err as Error).message}`, { file: configPath }, err);
  }
  const kind = (raw as { peft_type?: unknown })?.peft_type;
  if (kind !== "PROMPT_TUNING") fail("adapter", `peft_type ${JSON.stringify(kind)} is not supported here; expected "PROMPT_TUNING"`, { file: configPath, field: "peft_type" });
  const config = parseWith(promptTuningConfigSchema, raw, "adapter", { file: configPath });
  if (config.num_transformer_submodules !== 1) {
    fail("adapter", `num_transformer_submodules ${config.num_transformer_submodules} is for encoder-decoder models; expected 1`, { file: configPath, field: "num_transformer_submodules" });
  }
  const file = await SafetensorsFile.open(weightsPath);
  try {
    if (!file.has("prompt_embeddings")) fail("adapter", "no tensor prompt_embeddings", { file: weightsPath });
    const info = file.info("prompt_embeddings");
    const want = [config.num_virtual_tokens, config.token_dim];
    if (info.shape.length !== 2 || info.shape[0] !== want[0] || info.shape[1] !== want[1]) {
      fail("adapter", `shape [${info.shape.join(", ")}] does not match the config's [${want.join(", ")}]`, { file: weightsPath, tensor: "prompt_embeddings" });
    }
    const embeddings = await file.readFloat32("prompt_embeddings");
    if (!embeddings.every(Number.isFinite)) fail("adapter", "holds NaN or Inf values", { file: weightsPath, tensor: "prompt_embeddings" });
    return { config, embeddings, metadata: file.metadata };
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
 * else by what PEFT records (width, layers, heads, and the base model's name).
 */
export function checkAdapterFits(adapter: PromptAdapter, model: BaseModel, where: string): void {
  const { token_dim, num_layers, num_attention_heads, base_model_name_or_path } = adapter.config;
  const mismatch = (field: string, message: string) => fail("adapter", message, { file: where, field });
  if (token_dim !== model.hiddenSize) mismatch("token_dim", `token_dim ${token_dim} does not match the model's hidden size ${model.hiddenSize}`);
  const fingerprint = adapter.metadata?.[BASE_FINGERPRINT];
  if (fingerprint !== undefined) {
    if (fingerprint !== baseFingerprint(model.embeddings)) {
      mismatch(BASE_FINGERPRINT, `trained on another base model (${base_model_name_or_path ?? "unnamed"}): its token embeddings differ from ${model.name}'s`);
    }
    return;
  }
  if (num_layers != null && num_layers !== model.numLayers) mismatch("num_layers", `num_layers ${num_layers} does not match the model's ${model.numLayers}`);
  if (num_attention_heads != null && num_attention_heads !== model.numHeads) {
    mismatch("num_attention_heads", `num_attention_heads ${num_attention_heads} does not match the model's ${model.numHeads}`);
  }
  const lastPart = (s: string) => s.replace(/[\\/]+$/, "").split(/[\\/]/).pop()!.toLowerCase();
  if (base_model_name_or_path && lastPart(base_model_name_or_path) !== lastPart(model.name)) {
    mismatch("base_model_name_or_path", `made for base model "${base_model_name_or_path}", not "${model.name}"`);
  }
}

function sortKeys<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1))) as T;
}
