// Access to the golden reference data (HF transformers 5.18 + PEFT 0.21 outputs) copied into test/fixtures/golden.
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { SafetensorsFile } from "../../src/formats/safetensors.js";
import { readModelConfig } from "../../src/models/config.js";
import { loadWeights } from "../../src/models/checkpoint.js";
import { buildModel } from "../../src/models/build.js";
import type { CausalLM } from "../../src/models/causal-lm.js";

export const GOLDEN = fileURLToPath(new URL("../fixtures/golden/", import.meta.url));
export const ARCHS = ["gpt2", "llama", "qwen2"] as const;
export type Arch = (typeof ARCHS)[number];

export const modelDir = (arch: Arch) => join(GOLDEN, arch, "model");
export const adapterDir = (arch: Arch, method: string) => join(GOLDEN, arch, "adapters", method);
export const goldenIndex = (arch: Arch) => JSON.parse(readFileSync(join(GOLDEN, arch, "index.json"), "utf8"));

/** Every tensor of one golden case: float tensors as Float32Array, int64 as number[]. */
export async function readCase(arch: Arch, name: string): Promise<Map<string, { data: Float32Array | number[]; shape: number[] }>> {
  return readTensors(join(GOLDEN, arch, "cases", `${name}.safetensors`));
}

/** Every tensor of a safetensors file (a golden or reference case): float tensors as Float32Array, int64 as number[]. */
export async function readTensors(path: string): Promise<Map<string, { data: Float32Array | number[]; shape: number[] }>> {
  const file = await SafetensorsFile.open(path);
  const out = new Map<string, { data: Float32Array | number[]; shape: number[] }>();
  try {
    for (const n of file.tensorNames()) {
      const info = file.info(n);
      if (info.dtype === "I64") {
        const bytes = await file.read(n);
        const ints = new BigInt64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
        out.set(n, { data: [...ints].map(Number), shape: [...info.shape] });
      } else out.set(n, { data: await file.readFloat32(n), shape: [...info.shape] });
    }
  } finally {
    await file.close();
  }
  return out;
}

/** Rows of a [B, T] int tensor. */
export function rows(t: { data: Float32Array | number[]; shape: number[] }): number[][] {
  const [b, n] = t.shape;
  return Array.from({ length: b }, (_, i) => Array.from(t.data.slice(i * n, (i + 1) * n), Number));
}

/** max |a - b| over positions where `valid(row, pos)`, for [B, T, X] tensors. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, dims: number[], valid: (row: number, pos: number) => boolean = () => true): number {
  const [B, T] = dims;
  const inner = dims.slice(2).reduce((x, y) => x * y, 1);
  let m = 0;
  for (let r = 0; r < B; r++)
    for (let t = 0; t < T; t++) {
      if (!valid(r, t)) continue;
      for (let k = 0; k < inner; k++) {
        const i = (r * T + t) * inner + k;
        m = Math.max(m, Math.abs(a[i] - b[i]));
      }
    }
  return m;
}

const models = new Map<Arch, Promise<CausalLM>>();
/** The golden model of an architecture, loaded once per test file. */
export function loadGoldenModel(arch: Arch): Promise<CausalLM> {
  let lm = models.get(arch);
  if (lm === undefined) {
    lm = readModelConfig(modelDir(arch)).then(async (config) => buildModel(config, await loadWeights(modelDir(arch), config)));
    models.set(arch, lm);
  }
  return lm;
}
