// Finite-difference gradient checking for graph ops: the analytic gradient from `grad` against
// central differences of the same compiled forward graph, in float64 unless an op lacks it in ORT.
import { type DType, type Shape, type Value } from "../../src/graph/ir.js";
import * as o from "../../src/graph/ops.js";
import { grad } from "../../src/graph/autodiff.js";
import { Program, type Tensor } from "../../src/runtime/session.js";

export interface GradInput {
  shape: number[];
  /** Values to use; random normal by default. */
  data?: number[];
  /** Not differentiated (indices, masks, conditions). */
  fixed?: { dtype: DType; data: number[] };
}

export interface GradCheckResult {
  maxRelError: number;
  checked: number;
}

let seed = 12345;
function rand(): number {
  // xorshift32: deterministic test data without depending on the project's RNG.
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
}
export function randn(n: number): number[] {
  return Array.from({ length: n }, () => {
    const u = Math.max(rand(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  });
}

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

export async function gradCheck(
  build: (xs: Value[]) => Value,
  specs: GradInput[],
  { dtype = "float64" as DType, eps = 1e-6, maxElements = 64 } = {},
): Promise<GradCheckResult> {
  const xs = specs.map((s, i) => o.input(`x${i}`, s.fixed?.dtype ?? dtype, s.shape));
  const y = build(xs);
  // loss = Σ y ⊙ r with a fixed random r, so every output element matters.
  const r = o.constant(makeArray(dtype, randn(staticSize(y.shape))), y.shape, dtype);
  const loss = o.reduceSum(o.mul(o.cast(y, dtype), r), y.shape.map((_, i) => i), false);
  const wrt = xs.filter((_, i) => specs[i].fixed === undefined);
  const grads = grad(loss, wrt);
  const gradProgram = await Program.compile(Object.fromEntries([["loss", loss], ...grads.map((g, i) => [`g${i}`, g] as const)]));
  const lossProgram = await Program.compile({ loss });

  const values = specs.map((s) => s.fixed?.data ?? s.data ?? randn(size(s.shape)));
  const feeds = (vals: number[][]) =>
    Object.fromEntries(
      specs.map((s, i): [string, Tensor] => [`x${i}`, { data: makeArray(s.fixed?.dtype ?? dtype, vals[i]), dims: s.shape }]),
    );
  const analytic = await gradProgram.run(feeds(values));
  const lossAt = async (vals: number[][]) => Number((await lossProgram.run(feeds(vals))).loss.data[0]);

  let maxRelError = 0;
  let checked = 0;
  let gi = 0;
  for (let i = 0; i < specs.length; i++) {
    if (specs[i].fixed !== undefined) continue;
    const g = analytic[`g${gi++}`].data as Float64Array | Float32Array;
    const n = values[i].length;
    const picks = n <= maxElements ? [...Array(n).keys()] : Array.from({ length: maxElements }, () => Math.floor(rand() * n));
    for (const k of picks) {
      const plus = values.map((v) => [...v]);
      const minus = values.map((v) => [...v]);
      plus[i][k] += eps;
      minus[i][k] -= eps;
      const numeric = ((await lossAt(plus)) - (await lossAt(minus))) / (2 * eps);
      const err = Math.abs(numeric - g[k]) / Math.max(1, Math.abs(numeric), Math.abs(g[k]));
      maxRelError = Math.max(maxRelError, err);
      checked++;
    }
  }
  return { maxRelError, checked };
}

function staticSize(shape: Shape): number {
  return shape.reduce<number>((a, d) => a * (d as number), 1);
}

function makeArray(dtype: DType, values: number[]) {
  return o.arrayOf(dtype, values);
}
