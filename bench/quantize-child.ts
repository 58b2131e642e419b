// Child process of the quantize benchmark: one mode (float32, int8 or int4) on the GPT-2-small shape in a process
// of its own, so its memory is its own: decode tokens/s at batch 1 and 8, the weights' bytes, peak and final RSS.
import { buildModel } from "../src/models/build.js";
import type { CausalLM } from "../src/models/causal-lm.js";
import { QuantizedWeights, parseQuantizeMode, quantizeModel } from "../src/quantize/index.js";
import { Rng } from "../src/util/rng.js";
import { peakRssMb, randomWeights, shapeConfig } from "./common.js";
import { greedyTokens } from "./quantize.js";

/** Decode tokens/s: `rows` rows, a 32-token prefill, then `steps` greedy steps (the prefill's time taken off). */
async function decodeSpeed(lm: CausalLM, rows: number, steps: number): Promise<number> {
  const rng = new Rng(9);
  const inputs = Array.from({ length: rows }, () => Array.from({ length: 32 }, () => rng.int(lm.config.vocabSize)));
  await greedyTokens(lm, inputs, 2); // compiles prefill and step
  const t0 = performance.now();
  await greedyTokens(lm, inputs, 1);
  const prefill = performance.now() - t0;
  const t1 = performance.now();
  await greedyTokens(lm, inputs, steps + 1);
  return (rows * steps) / ((performance.now() - t1 - prefill) / 1000);
}

const mode = process.argv[2];
const config = shapeConfig("gpt2-small");
let lm = buildModel(config, randomWeights(config));
if (mode !== "float32") lm = quantizeModel(lm, parseQuantizeMode(mode, "mode")); // the float32 projections are dropped here
const bytes = lm.weights instanceof QuantizedWeights ? lm.weights.bytes() : { quantized: 0, float32: lm.weights.names().reduce((s, n) => s + lm.weights.tensor(n).data.byteLength, 0) };
const speed = { batch_1_tokens_per_s: await decodeSpeed(lm, 1, 16), batch_8_tokens_per_s: await decodeSpeed(lm, 8, 16) };
globalThis.gc?.();
const mb = (b: number) => b / 2 ** 20;
console.log(JSON.stringify({ ...speed, weights_mb: mb(bytes.quantized + bytes.float32), quantized_mb: mb(bytes.quantized), rss_mb: mb(process.memoryUsage().rss), peak_rss_mb: peakRssMb() }));
