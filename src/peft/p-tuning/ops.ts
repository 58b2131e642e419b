/**
 * The two implementations of the encoder's TensorOps: graph values (for training, differentiated by
 * autodiff) and host matrices in float64 (for the saved adapter and inference: a few small matrices,
 * computed once per adapter).
 */
import type { Value } from "../../graph/ir.js";
import * as o from "../../graph/ops.js";
import * as nn from "../../graph/nn.js";
import type { Param } from "../method.js";
import type { TensorOps } from "./encoder.js";

export const graphOps: TensorOps<Value> = {
  linear: (x, weight, bias) => nn.linear(x, weight, bias, "out_in"),
  add: o.add,
  mul: o.mul,
  relu: nn.relu,
  sigmoid: o.sigmoid,
  tanh: o.tanh,
  rows: (x, start, end) => o.slice(x, 0, start, end),
  cols: (x, start, end) => o.slice(x, 1, start, end),
  concatRows: (xs) => o.concat(xs, 0),
  concatCols: (xs) => o.concat(xs, 1),
  zeros: (rows, cols) => o.constant(new Float32Array(rows * cols), [rows, cols]),
};

/** A row-major host matrix; a vector is one row. */
export interface Matrix {
  rows: number;
  cols: number;
  data: Float64Array;
}

export function matrixOf({ shape, data }: Param): Matrix {
  const [rows, cols] = shape.length === 1 ? [1, shape[0]] : shape;
  return { rows, cols, data: Float64Array.from(data) };
}

const map = (x: Matrix, f: (v: number) => number): Matrix => ({ ...x, data: x.data.map(f) });

/** a ∘ b elementwise, b repeated over a's rows when it is one row. */
function zip(a: Matrix, b: Matrix, f: (x: number, y: number) => number): Matrix {
  const data = new Float64Array(a.rows * a.cols);
  for (let r = 0; r < a.rows; r++) {
    const rb = b.rows === 1 ? 0 : r;
    for (let c = 0; c < a.cols; c++) data[r * a.cols + c] = f(a.data[r * a.cols + c], b.data[rb * b.cols + c]);
  }
  return { rows: a.rows, cols: a.cols, data };
}

function window(x: Matrix, r0: number, r1: number, c0: number, c1: number): Matrix {
  const out: Matrix = { rows: r1 - r0, cols: c1 - c0, data: new Float64Array((r1 - r0) * (c1 - c0)) };
  for (let r = r0; r < r1; r++) out.data.set(x.data.subarray(r * x.cols + c0, r * x.cols + c1), (r - r0) * out.cols);
  return out;
}

export const hostOps: TensorOps<Matrix> = {
  linear(x, w, b) {
    const out: Matrix = { rows: x.rows, cols: w.rows, data: new Float64Array(x.rows * w.rows) };
    for (let i = 0; i < x.rows; i++) {
      for (let j = 0; j < w.rows; j++) {
        let sum = b.data[j];
        for (let k = 0; k < x.cols; k++) sum += x.data[i * x.cols + k] * w.data[j * w.cols + k];
        out.data[i * out.cols + j] = sum;
      }
    }
    return out;
  },
  add: (a, b) => zip(a, b, (x, y) => x + y),
  mul: (a, b) => zip(a, b, (x, y) => x * y),
  relu: (x) => map(x, (v) => (v > 0 ? v : 0)),
  sigmoid: (x) => map(x, (v) => 1 / (1 + Math.exp(-v))),
  tanh: (x) => map(x, Math.tanh),
  rows: (x, start, end) => window(x, start, end, 0, x.cols),
  cols: (x, start, end) => window(x, 0, x.rows, start, end),
  concatRows(xs) {
    const data = new Float64Array(xs.reduce((n, x) => n + x.data.length, 0));
    let at = 0;
    for (const x of xs) {
      data.set(x.data, at);
      at += x.data.length;
    }
    return { rows: xs.reduce((n, x) => n + x.rows, 0), cols: xs[0].cols, data };
  },
  concatCols(xs) {
    const cols = xs.reduce((n, x) => n + x.cols, 0);
    const out: Matrix = { rows: xs[0].rows, cols, data: new Float64Array(xs[0].rows * cols) };
    for (let r = 0; r < out.rows; r++) {
      let at = r * cols;
      for (const x of xs) {
        out.data.set(x.data.subarray(r * x.cols, (r + 1) * x.cols), at);
        at += x.cols;
      }
    }
    return out;
  },
  zeros: (rows, cols) => ({ rows, cols, data: new Float64Array(rows * cols) }),
};
