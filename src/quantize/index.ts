/**
 * Weight-only quantisation for inference (`--quantize int8|int4`): every projection the forward passes
 * through its `linear` hook is quantised once, at load, in blocks of 32 along its inputs; embeddings,
 * norms and biases stay float32. Float32 stays the default.
 */
import { fail } from "../util/errors.js";
import type { CausalLM } from "../models/causal-lm.js";
import { architectureFor } from "../models/families.js";
import { projections } from "../infer/lora.js";
import { type QuantizedMatrix, quantizeMatrix } from "./pack.js";
import { QUANTIZE_MODES, type QuantizeMode, QuantizedWeights } from "./weights.js";

export { QUANTIZE_MODES, type QuantizeMode, QuantizedWeights } from "./weights.js";
export { BLOCK_SIZE, dequantizeMatrix, quantizeMatrix, type QuantizedMatrix } from "./pack.js";

/** The --quantize flag's help (generate, eval, serve). */
export const QUANTIZE_HELP = "run the block projections with int8 or int4 weights (blocks of 32; embeddings and norms stay float32): faster decoding, slightly different outputs";

/** The same model with every block projection quantised to `mode`; the float32 copies of those weights are left behind. */
export function quantizeModel(lm: CausalLM, mode: QuantizeMode): CausalLM {
  const bits = parseQuantizeMode(mode, "quantize") === "int4" ? 4 : 8;
  const matrices = new Map<string, QuantizedMatrix>();
  for (const p of projections(lm)) {
    const name = `${p.module}.weight`;
    matrices.set(name, quantizeMatrix(lm.weights.tensor(name).data, p.outFeatures, p.inFeatures, p.layout, bits));
  }
  const floats = new Map(lm.weights.names().filter((n) => !matrices.has(n)).map((n) => [n, lm.weights.tensor(n)]));
  return architectureFor(lm.config.modelType).build(lm.config, new QuantizedWeights(floats, matrices, mode));
}

/** A `--quantize` value (CLI flag, API option or server option), checked. */
export function parseQuantizeMode(value: unknown, field = "--quantize"): QuantizeMode {
  if (typeof value === "string" && (QUANTIZE_MODES as readonly string[]).includes(value)) return value as QuantizeMode;
  return fail("usage", `${field} must be one of ${QUANTIZE_MODES.join(", ")}, got ${JSON.stringify(value)}`, { field });
}

