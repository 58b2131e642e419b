// Child process of the quantize benchmark: one mode (float32, int8 or int4) on the GPT-2-small shape in a process of its
// own, so its memory is its own: the weights' bytes, then RSS after a short greedy decode (prefill and step programs
// compiled) and the process's peak.
import { buildModel } from "../src/models/build.js";
import { QuantizedWeights, parseQuantizeMode, quantizeModel } from "../src/quantize/index.js";
import { peakRssMb, randomWeights, shapeConfig } from "./common.js";
import { greedyTokens } from "./quantize.js";

const mode = process.argv[2];
const config = shapeConfig("gpt2-small");
let lm = buildModel(config, randomWeights(config));
if (mode !== "float32") lm = quantizeModel(lm, parseQuantizeMode(mode, "mode")); // the float32 projections are dropped here
const bytes = lm.weights instanceof QuantizedWeights ? lm.weights.bytes() : { quantized: 0, float32: lm.weights.names().reduce((s, n) => s + lm.weights.tensor(n).data.byteLength, 0) };
await greedyTokens(lm, [Array.from({ length: 32 }, (_, i) => i)], 4);
globalThis.gc?.();
const mb = (b: number) => b / 2 ** 20;
console.log(JSON.stringify({ weights_mb: mb(bytes.quantized + bytes.float32), quantized_mb: mb(bytes.quantized), rss_after_decode_mb: mb(process.memoryUsage().rss), peak_rss_mb: peakRssMb() }));
