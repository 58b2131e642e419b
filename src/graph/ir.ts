/**
 * The graph IR: immutable values built by op functions (see ops.ts), each knowing its op, inputs,
 * attributes, dtype and shape. Shapes may hold symbolic dims ("batch", "seq") that ONNX Runtime
 * binds at run time; everything else about a graph is checked when it is built.
 */
import { fail } from "../util/errors.js";

export type DType = "float32" | "float64" | "int64" | "int32" | "uint8" | "bool";
/** A dim is a size, or the name of a size known only at run time. */
export type Dim = number | string;
export type Shape = readonly Dim[];

export type TypedArrayFor<D extends DType> = D extends "float32"
  ? Float32Array
  : D extends "float64"
    ? Float64Array
    : D extends "int64"
      ? BigInt64Array
      : D extends "int32"
        ? Int32Array
        : Uint8Array;
export type AnyTypedArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

/** Attributes of each primitive op. The op set is small; composites live in ops.ts and nn.ts. */
export interface OpAttrs {
  input: { name: string };
  constant: { data: AnyTypedArray };
  add: Record<string, never>;
  sub: Record<string, never>;
  mul: Record<string, never>;
  div: Record<string, never>;
  pow: { exponent: number };
  neg: Record<string, never>;
  sqrt: Record<string, never>;
  reciprocal: Record<string, never>;
  exp: Record<string, never>;
  log: Record<string, never>;
  tanh: Record<string, never>;
  erf: Record<string, never>;
  sigmoid: Record<string, never>;
  geluTanh: Record<string, never>;
  silu: Record<string, never>;
  sin: Record<string, never>;
  cos: Record<string, never>;
  equal: Record<string, never>;
  less: Record<string, never>;
  greater: Record<string, never>;
  and: Record<string, never>;
  not: Record<string, never>;
  where: Record<string, never>;
  cast: { to: DType };
  matmul: { transA: boolean; transB: boolean; alpha: number };
  gemm: { transA: boolean; transB: boolean };
  reduceSum: { axes: number[]; keepdims: boolean };
  reduceMean: { axes: number[]; keepdims: boolean };
  reduceMax: { axes: number[]; keepdims: boolean };
  cumSum: { axis: number; reverse: boolean };
  softmax: { axis: number };
  logSoftmax: { axis: number };
  layerNorm: { epsilon: number };
  layerNormStat: { stat: "mean" | "invStdDev" };
  rmsNorm: { epsilon: number };
  reshape: { shape: number[] };
  reshapeLike: Record<string, never>;
  transpose: { perm: number[] };
  unsqueeze: { axes: number[] };
  squeeze: { axes: number[] };
  expand: { shape: number[] };
  expandLike: Record<string, never>;
  slice: { axis: number; start: number; end: number };
  pad: { axis: number; before: number; after: number };
  concat: { axis: number };
  gather: { axis: number };
  scatterAddRows: Record<string, never>;
  gatherElements: { axis: number };
  scatterElementsAdd: { axis: number };
  softmaxCrossEntropy: { ignoreIndex: number };
  matMulNBits: { bits: 4 | 8; blockSize: number; k: number; n: number };
}
export type OpKind = keyof OpAttrs;

export interface Value<K extends OpKind = OpKind> {
  readonly id: number;
  readonly op: K;
  readonly inputs: readonly Value[];
  readonly attrs: OpAttrs[K];
  readonly dtype: DType;
  readonly shape: Shape;
}

let nextId = 0;

/** The one constructor of values; op functions check their inputs, then call this. */
export function makeValue<K extends OpKind>(
  op: K,
  inputs: readonly Value[],
  attrs: OpAttrs[K],
  dtype: DType,
  shape: Shape,
): Value<K> {
  return { id: nextId++, op, inputs, attrs, dtype, shape: [...shape] };
}

export const isFloat = (dtype: DType): boolean => dtype === "float32" || dtype === "float64";

export function formatShape(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}

export function shapeError(op: string, message: string): never {
  return fail("shape", message, { op });
}

/** Normalise a possibly negative axis against a rank, failing with the op's name. */
export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) shapeError(op, `axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/** The static element count of a shape, or undefined when a dim is symbolic. */
export function staticSize(shape: Shape): number | undefined {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== "number") return undefined;
    n *= d;
  }
  return n;
}

/** Numpy broadcasting of two shapes; a symbolic dim only matches itself or 1. */
export function broadcastShapes(op: string, a: Shape, b: Shape): Dim[] {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = i < rank - a.length ? 1 : a[i - (rank - a.length)];
    const db = i < rank - b.length ? 1 : b[i - (rank - b.length)];
    if (da === db || db === 1) out.push(da);
    else if (da === 1) out.push(db);
    else shapeError(op, `shapes ${formatShape(a)} and ${formatShape(b)} do not broadcast (dim ${i}: ${da} vs ${db})`);
  }
  return out;
}

/** Values in topological order (inputs before users), starting from the given roots. */
export function topoSort(roots: readonly Value[]): Value[] {
  const order: Value[] = [];
  const seen = new Set<number>();
  // Iterative DFS: model graphs are deep enough (thousands of nodes) to overflow recursion.
  const stack: [Value, number][] = roots.map((r) => [r, 0]);
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const [v, i] = top;
    if (i === 0 && seen.has(v.id)) {
      stack.pop();
      continue;
    }
    if (i < v.inputs.length) {
      top[1] = i + 1;
      const child = v.inputs[i];
      if (!seen.has(child.id)) stack.push([child, 0]);
    } else {
      stack.pop();
      if (!seen.has(v.id)) {
        seen.add(v.id);
        order.push(v);
      }
    }
  }
  return order;
}
