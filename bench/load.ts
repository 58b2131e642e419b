// The load benchmark: write a GPT-2-small-shaped checkpoint (random weights), then in a fresh process
// time loading it and the first forward, and take that process's peak RSS against the float32 weight size.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeSafetensors } from "../src/formats/safetensors.js";
import { SHAPES, randomWeights, shapeConfig } from "./common.js";

export async function benchLoad() {
  const dir = mkdtempSync(join(tmpdir(), "bench-load-"));
  try {
    const config = shapeConfig("gpt2-small");
    const weights = randomWeights(config);
    let bytes = 0;
    const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    const { tensorSpec } = await import("../src/models/checkpoint.js");
    for (const { name, shape } of tensorSpec(config)) {
      const data = weights.get(name)!;
      tensors[`transformer.${name}`] = { dtype: "F32", shape, data };
      bytes += data.byteLength;
    }
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
    weights.clear();
    writeFileSync(join(dir, "config.json"), JSON.stringify(SHAPES["gpt2-small"]));
    // Any tokenizer will do for timing; the golden one is small.
    const golden = fileURLToPath(new URL("../test/fixtures/golden/tokenizer/", import.meta.url));
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(golden, f), join(dir, f));
    const child = fileURLToPath(new URL("./load-child.ts", import.meta.url));
    const out = execFileSync(process.execPath, ["--import", "tsx", child, dir], { encoding: "utf8" });
    const result = JSON.parse(out.trim().split("\n").pop()!) as { load_s: number; first_forward_s: number; peak_rss_mb: number };
    const weightMb = bytes / 2 ** 20;
    return { shape: "gpt2-small", ...result, float32_weights_mb: weightMb, rss_over_weights: result.peak_rss_mb / weightMb };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
