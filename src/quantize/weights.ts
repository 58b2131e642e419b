/**
 * A model's weights with its projections quantised (see pack.ts): every other tensor (embeddings, norms,
 * biases) stays float32 and is fed as before. The quantised ones enter each graph as constants, not
 * inputs: ORT's MatMulNBits repacks constant weights once at load for its int8 kernels, while a fed one
 * is dequantised to float32 on every run (measured on a [768, 3072] weight, one row: 0.10 ms vs 15.6 ms).
 */
import { fail } from "../util/errors.js";
import type { Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import { type WeightTensor, Weights } from "../models/causal-lm.js";
import { type QuantizedMatrix, quantizedBytes } from "./pack.js";

export type QuantizeMode = "int8" | "int4";
export const QUANTIZE_MODES: readonly QuantizeMode[] = ["int8", "int4"];

export class QuantizedWeights extends Weights {
  private readonly constants = new Map<string, Value[]>();

  constructor(
    floats: Map<string, WeightTensor>,
    private readonly matrices: ReadonlyMap<string, QuantizedMatrix>,
    readonly mode: QuantizeMode,
  ) {
    super(floats);
  }

  isQuantized(name: string): boolean {
    return this.matrices.has(name);
  }

  override has(name: string): boolean {
    return this.matrices.has(name) || super.has(name);
  }

  /** A quantised weight has no float32 graph input: whatever asks for one (LoRA, merging, training) is refused here. */
  override get(name: string): Value {
    if (this.matrices.has(name)) this.refuse(name);
    return super.get(name);
  }

  override tensor(name: string): WeightTensor {
    if (this.matrices.has(name)) this.refuse(name);
    return super.tensor(name);
  }

  /** x [..., in] @ Wᵀ → [..., out] through the quantised weight `name`. */
  matmul(name: string, x: Value): Value {
    const q = this.matrices.get(name);
    if (q === undefined) return fail("weights", `the model has no quantised weight "${name}"`, { tensor: name });
    let c = this.constants.get(name);
    if (c === undefined) {
      const kBlocks = Math.ceil(q.k / q.blockSize);
      c = [
        o.constant(q.packed, [q.n, kBlocks, (q.blockSize * q.bits) / 8], "uint8"),
        o.constant(q.scales, [q.scales.length], "float32"),
        o.constant(q.zeroPoints, [q.zeroPoints.length], "uint8"),
      ];
      this.constants.set(name, c);
    }
    const [packed, scales, zeroPoints] = c;
    return o.matMulNBits(x, packed, scales, zeroPoints, { bits: q.bits, blockSize: q.blockSize });
  }

  /** Bytes of the quantised projections and of the float32 tensors left. */
  bytes(): { quantized: number; float32: number } {
    const quantized = [...this.matrices.values()].reduce((sum, q) => sum + quantizedBytes(q), 0);
    const float32 = this.names().reduce((sum, n) => sum + super.tensor(n).data.byteLength, 0);
    return { quantized, float32 };
  }

  private refuse(name: string): never {
    return fail(
      "usage",
      `${name} is quantised (--quantize ${this.mode}); quantised weights are for inference only: LoRA adapters, merging and training need the float32 model (leave out --quantize)`,
      { tensor: name, field: "--quantize" },
    );
  }
}

/** The projection `module` through its quantised weight (plus bias), or undefined when its weight is float32. */
export function quantizedLinear(weights: Weights, module: string, x: Value, bias: Value | undefined): Value | undefined {
  const name = `${module}.weight`;
  if (!(weights instanceof QuantizedWeights) || !weights.isQuantized(name)) return undefined;
  const y = weights.matmul(name, x);
  return bias === undefined ? y : o.add(y, bias);
}
