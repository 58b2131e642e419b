// The load benchmark: per model shape, write a checkpoint of random weights in the dtype the hub's copy
// has (GPT-2 small float32; Qwen3-0.6B and Gemma-3-270M bfloat16), then in a fresh process time loading
// it and the first forward, and take that process's peak RSS against the weights' size (stored, and as
// the float32 copy softprompt computes with).
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type TensorToWrite, writeSafetensors } from "../src/formats/safetensors.js";
import { tensorSpec } from "../src/models/checkpoint.js";
import { SHAPES, randomWeights, shapeConfig } from "./common.js";

const BENCHED: { shape: string; dtype: "F32" | "BF16"; prefix?: string }[] = [
  { shape: "gpt2-small", dtype: "F32", prefix: "transformer." },
  { shape: "qwen3-0.6b", dtype: "BF16" },
  { shape: "gemma3-270m", dtype: "BF16" },
];

/** float32 → bfloat16 bytes (the upper half of each float, rounded to nearest even), little-endian. */
function toBf16(data: Float32Array): Uint8Array {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint16Array(data.length);
  for (let i = 0; i < bits.length; i++) out[i] = (bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16;
  return new Uint8Array(out.buffer);
}

async function benchShape({ shape, dtype, prefix = "" }: (typeof BENCHED)[number]) {
  const dir = mkdtempSync(join(tmpdir(), "bench-load-"));
  try {
    const config = shapeConfig(shape);
    const weights = randomWeights(config);
    let float32Bytes = 0;
    let storedBytes = 0;
    const tensors: Record<string, TensorToWrite> = {};
    for (const { name, shape: dims } of tensorSpec(config)) {
      const f32 = weights.get(name)!;
      const data = dtype === "BF16" ? toBf16(f32) : f32;
      weights.delete(name); // one copy at a time
      tensors[`${prefix}${name}`] = { dtype, shape: dims, data };
      float32Bytes += f32.byteLength;
      storedBytes += data.byteLength;
    }
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
    writeFileSync(join(dir, "config.json"), JSON.stringify(SHAPES[shape]));
    // Any tokenizer will do for timing; the golden one is small.
    const golden = fileURLToPath(new URL("../test/fixtures/golden/tokenizer/", import.meta.url));
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(golden, f), join(dir, f));
    const child = fileURLToPath(new URL("./load-child.ts", import.meta.url));
    const out = execFileSync(process.execPath, ["--import", "tsx", child, dir], { encoding: "utf8" });
    const result = JSON.parse(out.trim().split("\n").pop()!) as { load_s: number; first_forward_s: number; peak_rss_mb: number };
    const [storedMb, float32Mb] = [storedBytes / 2 ** 20, float32Bytes / 2 ** 20];
    return {
      shape,
      stored_dtype: dtype,
      ...result,
      stored_weights_mb: storedMb,
      float32_weights_mb: float32Mb,
      rss_over_float32_weights: result.peak_rss_mb / float32Mb,
      load_s_per_gb_stored: result.load_s / (storedBytes / 2 ** 30),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchLoad() {
  const shapes = [];
  for (const b of BENCHED) shapes.push(await benchShape(b)); // one at a time: the machine is small and shared
  return { shapes, note: "one run per shape on a shared machine: compare ratios, not absolute seconds" };
}
