/** A model folder summarised: what `softprompt info` prints. Reads only headers, never tensor data. */
import { promises as fsp } from "node:fs";
import { join } from "node:path";
import { canonicalName, isIgnoredTensor } from "./checkpoint.js";
import { openCheckpoint } from "../formats/checkpoint.js";
import { readModelConfig } from "./config.js";

export interface ModelInfo {
  /** The transformers class, e.g. "LlamaForCausalLM" (the model type when config.json names none). */
  architecture: string;
  /** config.json's model_type. */
  modelType: string;
  /** Counted from the safetensors headers; tied embeddings once, buffers not at all. */
  parameters: number;
  /** The safetensors dtype holding most parameters, e.g. "BF16". */
  dtype: string;
  vocabSize: number;
  contextLength: number;
  hiddenSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  files: { name: string; bytes: number }[];
}

export async function modelInfo(dir: string): Promise<ModelInfo> {
  const config = await readModelConfig(dir);
  const checkpoint = await openCheckpoint(dir);
  const paramsByDtype = new Map<string, number>();
  try {
    for (const name of checkpoint.tensorNames()) {
      if (isIgnoredTensor(config, canonicalName(config, name))) continue;
      const { dtype, shape } = checkpoint.info(name);
      paramsByDtype.set(dtype, (paramsByDtype.get(dtype) ?? 0) + shape.reduce((n, d) => n * d, 1));
    }
  } finally {
    await checkpoint.close();
  }
  const byCount = [...paramsByDtype].sort(([, a], [, b]) => b - a);
  const architectures = config.raw.architectures;
  return {
    architecture: Array.isArray(architectures) && typeof architectures[0] === "string" ? architectures[0] : config.modelType,
    modelType: config.modelType,
    parameters: byCount.reduce((sum, [, n]) => sum + n, 0),
    dtype: byCount[0]?.[0] ?? config.dtype,
    vocabSize: config.vocabSize,
    contextLength: config.maxPositions,
    hiddenSize: config.hiddenSize,
    layers: config.numLayers,
    heads: config.numHeads,
    kvHeads: config.numKvHeads,
    files: await listFiles(dir),
  };
}

/** Regular files in the folder with their sizes; hub snapshots hold symlinks, so sizes follow them. */
async function listFiles(dir: string): Promise<{ name: string; bytes: number }[]> {
  const files: { name: string; bytes: number }[] = [];
  for (const name of (await fsp.readdir(dir)).sort()) {
    const stats = await fsp.stat(join(dir, name)).catch(() => undefined);
    if (stats?.isFile()) files.push({ name, bytes: stats.size });
  }
  return files;
}
