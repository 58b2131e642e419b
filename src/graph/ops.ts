/**
 * Op builders: each checks its inputs (failing at build time with the op's name and the shapes),
 * infers the output dtype and shape, and makes a value. Composites (erf GELU, attention, projections)
 * are built from these primitives in nn.ts and need no gradient rule of their own. A few functions that
 * training runs over every activation (tanh GELU, SiLU, the norms, softmax cross-entropy) are ops here
 * instead, with rules that take fewer passes over memory than autodiff of their composites would.
 */
import { fail } from "../util/errors.js";
import {
  type AnyTypedArray,
  type DType,
  type Dim,
  type Shape,
  type Value,
  broadcastShapes,
  formatShape,
  isFloat,
  makeValue,
  normAxis,
  shapeError,
  staticSize,
} from "./ir.js";

export type Scalar = number;
type Operand = Value | Scalar;

// ---------------------------------------------------------------- leaves

/** A named graph input, fed at run time (a token batch, a soft prompt, a frozen weight). */
export function input(name: string, dtype: DType, shape: Shape): Value<"input"> {
  return makeValue("input", [], { name }, dtype, shape);
}

/** A constant baked into the graph. Keep these small: weights are inputs, so programs share them. */
export function constant(data: AnyTypedArray, shape: Shape, dtype?: DType): Value<"constant"> {
  const dt = dtype ?? dtypeOfArray(data);
  const size = staticSize(shape);
  if (size !== data.length) shapeError("constant", `shape ${formatShape(shape)} needs ${size} elements, got ${data.length}`);
  return makeValue("constant", [], { data }, dt, shape);
}

export function scalar(value: number, dtype: DType = "float32"): Value<"constant"> {
  return constant(arrayOf(dtype, [value]), [], dtype);
}

function dtypeOfArray(data: AnyTypedArray): DType {
  if (data instanceof Float32Array) return "float32";
  if (data instanceof Float64Array) return "float64";
  if (data instanceof BigInt64Array) return "int64";
  if (data instanceof Int32Array) return "int32";
  return "bool";
}

export function arrayOf(dtype: DType, values: number[]): AnyTypedArray {
  switch (dtype) {
    case "float32":
      return Float32Array.from(values);
    case "float64":
      return Float64Array.from(values);
    case "int64":
      return BigInt64Array.from(values.map((v) => BigInt(v)));
    case "int32":
      return Int32Array.from(values);
    case "uint8":
      return Uint8Array.from(values);
    case "bool":
      return Uint8Array.from(values.map((v) => (v ? 1 : 0)));
  }
}

/** A plain number next to a value becomes a scalar constant of the value's dtype. */
function lift(x: Operand, like: DType): Value {
  return typeof x === "number" ? scalar(x, like) : x;
}

function sameDtype(op: string, a: Value, b: Value): void {
  if (a.dtype !== b.dtype) fail("dtype", `dtypes ${a.dtype} and ${b.dtype} differ`, { op });
}

function needFloat(op: string, x: Value): void {
  if (!isFloat(x.dtype)) fail("dtype", `needs a float input, got ${x.dtype}`, { op });
}

// ---------------------------------------------------------------- elementwise

function binary<K extends "add" | "sub" | "mul" | "div" | "equal" | "less" | "greater" | "and">(
  op: K,
  a: Operand,
  b: Operand,
  outDtype?: DType,
): Value<K> {
  const dtype = typeof a === "number" ? (b as Value).dtype : a.dtype;
  const va = lift(a, dtype);
  const vb = lift(b, dtype);
  sameDtype(op, va, vb);
  const shape = broadcastShapes(op, va.shape, vb.shape);
  return makeValue(op, [va, vb], {} as never, outDtype ?? va.dtype, shape);
}

export const add = (a: Operand, b: Operand) => binary("add", a, b);
export const sub = (a: Operand, b: Operand) => binary("sub", a, b);
export const mul = (a: Operand, b: Operand) => binary("mul", a, b);
export const div = (a: Operand, b: Operand) => binary("div", a, b);
export const equal = (a: Operand, b: Operand) => binary("equal", a, b, "bool");
export const less = (a: Operand, b: Operand) => binary("less", a, b, "bool");
export const greater = (a: Operand, b: Operand) => binary("greater", a, b, "bool");
export function and(a: Value, b: Value): Value<"and"> {
  if (a.dtype !== "bool" || b.dtype !== "bool") fail("dtype", `needs bool inputs, got ${a.dtype} and ${b.dtype}`, { op: "and" });
  return binary("and", a, b, "bool");
}

function unary<K extends "neg" | "sqrt" | "reciprocal" | "exp" | "log" | "tanh" | "erf" | "sigmoid" | "geluTanh" | "silu" | "sin" | "cos">(
  op: K,
  x: Value,
): Value<K> {
  if (op !== "neg") needFloat(op, x);
  return makeValue(op, [x], {} as never, x.dtype, x.shape);
}

export const neg = (x: Value) => unary("neg", x);
export const sqrt = (x: Value) => unary("sqrt", x);
export const reciprocal = (x: Value) => unary("reciprocal", x);
export const exp = (x: Value) => unary("exp", x);
export const log = (x: Value) => unary("log", x);
export const tanh = (x: Value) => unary("tanh", x);
export const erf = (x: Value) => unary("erf", x);
export const sigmoid = (x: Value) => unary("sigmoid", x);
export const sin = (x: Value) => unary("sin", x);
export const cos = (x: Value) => unary("cos", x);
/**
 * GELU, tanh approximation (GPT-2's "gelu_new"): ½x(1 + tanh(u)), u = √(2/π)(x + 0.044715x³), computed as
 * x·σ(2u) (the same function). One op with a gradient rule of its own, which takes fewer passes over the
 * [tokens, 4d] activations than autodiff of the composite would.
 */
export const geluTanh = (x: Value) => unary("geluTanh", x);
/** SiLU / swish x·σ(x): one op with a gradient rule of its own (fewer passes than autodiff of the product). */
export const silu = (x: Value) => unary("silu", x);
/** [a, b] with 2u = x(a + bx²): the tanh GELU is x·σ(2u). */
export const GELU_TANH_2U = [2 * Math.sqrt(2 / Math.PI), 2 * Math.sqrt(2 / Math.PI) * 0.044715] as const;

/** x ** exponent for a constant exponent. */
export function pow(x: Value, exponent: number): Value<"pow"> {
  needFloat("pow", x);
  return makeValue("pow", [x], { exponent }, x.dtype, x.shape);
}

export function not(x: Value): Value<"not"> {
  if (x.dtype !== "bool") fail("dtype", `needs a bool input, got ${x.dtype}`, { op: "not" });
  return makeValue("not", [x], {}, "bool", x.shape);
}

/** cond ? a : b, broadcasting all three. */
export function where(cond: Value, a: Operand, b: Operand): Value<"where"> {
  if (cond.dtype !== "bool") fail("dtype", `condition must be bool, got ${cond.dtype}`, { op: "where" });
  const dtype = typeof a === "number" ? (typeof b === "number" ? "float32" : b.dtype) : a.dtype;
  const va = lift(a, dtype);
  const vb = lift(b, dtype);
  sameDtype("where", va, vb);
  const shape = broadcastShapes("where", broadcastShapes("where", cond.shape, va.shape), vb.shape);
  return makeValue("where", [cond, va, vb], {}, va.dtype, shape);
}

export function cast(x: Value, to: DType): Value {
  if (x.dtype === to) return x;
  return makeValue("cast", [x], { to }, to, x.shape);
}

// ---------------------------------------------------------------- linear algebra

/**
 * Batched alpha · op(a) @ op(b) with numpy broadcasting over the leading dims, op = optional swap of
 * the last two axes: attention's q·kᵀ and its gradients need no transposed copy of k (or of q).
 */
export function matmul(a: Value, b: Value, { transA = false, transB = false, alpha = 1 } = {}): Value<"matmul"> {
  sameDtype("matmul", a, b);
  needFloat("matmul", a);
  if (a.shape.length < 2 || b.shape.length < 2) {
    shapeError("matmul", `needs rank >= 2 inputs, got ${formatShape(a.shape)} and ${formatShape(b.shape)}`);
  }
  const [m, k1] = lastTwo(a.shape, transA);
  const [k2, n] = lastTwo(b.shape, transB);
  if (k1 !== k2) {
    shapeError("matmul", `inner dims differ: ${formatShape(a.shape)}${transA ? "ᵀ" : ""} @ ${formatShape(b.shape)}${transB ? "ᵀ" : ""}`);
  }
  const batch = broadcastShapes("matmul", a.shape.slice(0, -2), b.shape.slice(0, -2));
  return makeValue("matmul", [a, b], { transA, transB, alpha }, a.dtype, [...batch, m, n]);
}

const lastTwo = (shape: Shape, swap: boolean): Dim[] => (swap ? [shape[shape.length - 1], shape[shape.length - 2]] : shape.slice(-2));

/**
 * 2-D product op(a) @ op(b), op = optional transpose. Lets weights stored as [out, in]
 * (Llama's Linear, GPT-2's tied LM head) be used as stored, with no transposed copy.
 */
export function gemm(a: Value, b: Value, { transA = false, transB = false } = {}): Value<"gemm"> {
  sameDtype("gemm", a, b);
  needFloat("gemm", a);
  if (a.shape.length !== 2 || b.shape.length !== 2) {
    shapeError("gemm", `needs 2-D inputs, got ${formatShape(a.shape)} and ${formatShape(b.shape)}`);
  }
  const [m, k1] = transA ? [a.shape[1], a.shape[0]] : a.shape;
  const [k2, n] = transB ? [b.shape[1], b.shape[0]] : b.shape;
  if (k1 !== k2) {
    shapeError("gemm", `inner dims differ: ${formatShape(a.shape)}${transA ? "ᵀ" : ""} @ ${formatShape(b.shape)}${transB ? "ᵀ" : ""}`);
  }
  return makeValue("gemm", [a, b], { transA, transB }, a.dtype, [m, n]);
}

/**
 * x [..., K] @ Wᵀ for a weight W [N, K] quantised in blocks of `blockSize` along K (ORT's contrib
 * MatMulNBits): `packed` [N, kBlocks, blockSize·bits/8] holds `bits`-bit codes packed low-first,
 * `scales` [N·kBlocks] and `zeroPoints` [N·⌈kBlocks·bits/8⌉] (packed likewise) one per block, and
 * W = (code − zero) · scale. Inference only: it has no gradient.
 */
export function matMulNBits(x: Value, packed: Value, scales: Value, zeroPoints: Value, { bits, blockSize }: { bits: 4 | 8; blockSize: number }): Value<"matMulNBits"> {
  if (x.dtype !== "float32" || scales.dtype !== "float32") fail("dtype", `x and scales must be float32, got ${x.dtype} and ${scales.dtype}`, { op: "matMulNBits" });
  if (packed.dtype !== "uint8" || zeroPoints.dtype !== "uint8") fail("dtype", `packed codes and zero points must be uint8, got ${packed.dtype} and ${zeroPoints.dtype}`, { op: "matMulNBits" });
  const k = x.shape[x.shape.length - 1];
  const n = packed.shape[0];
  if (typeof k !== "number" || typeof n !== "number" || packed.shape.length !== 3) {
    shapeError("matMulNBits", `needs x [..., K] and packed [N, kBlocks, blob] with static K and N, got ${formatShape(x.shape)} and ${formatShape(packed.shape)}`);
  }
  const kBlocks = Math.ceil(k / blockSize);
  const expected = { packed: [n, kBlocks, (blockSize * bits) / 8], scales: [n * kBlocks], zeroPoints: [n * Math.ceil((kBlocks * bits) / 8)] };
  const got = { packed: packed.shape, scales: scales.shape, zeroPoints: zeroPoints.shape };
  for (const name of ["packed", "scales", "zeroPoints"] as const) {
    if (!sameShape(got[name], expected[name])) {
      shapeError("matMulNBits", `K=${k}, N=${n}, ${bits} bits in blocks of ${blockSize} need ${name} ${formatShape(expected[name])}, got ${formatShape(got[name])}`);
    }
  }
  return makeValue("matMulNBits", [x, packed, scales, zeroPoints], { bits, blockSize, k, n }, "float32", [...x.shape.slice(0, -1), n]);
}

// ---------------------------------------------------------------- reductions and normalisation

function reduce<K extends "reduceSum" | "reduceMean" | "reduceMax">(op: K, x: Value, axes: number[], keepdims: boolean): Value<K> {
  const norm = [...new Set(axes.map((a) => normAxis(op, a, x.shape.length)))].sort((p, q) => p - q);
  const shape: Dim[] = [];
  x.shape.forEach((d, i) => {
    if (!norm.includes(i)) shape.push(d);
    else if (keepdims) shape.push(1);
  });
  return makeValue(op, [x], { axes: norm, keepdims } as never, x.dtype, shape);
}

export const reduceSum = (x: Value, axes: number[], keepdims = false) => reduce("reduceSum", x, axes, keepdims);
export const reduceMean = (x: Value, axes: number[], keepdims = false) => reduce("reduceMean", x, axes, keepdims);
export const reduceMax = (x: Value, axes: number[], keepdims = false) => reduce("reduceMax", x, axes, keepdims);

/** Running sums along one axis, from the start (or from the end when `reverse`), as ONNX CumSum. */
export function cumSum(x: Value, axis: number, reverse = false): Value<"cumSum"> {
  needFloat("cumSum", x);
  return makeValue("cumSum", [x], { axis: normAxis("cumSum", axis, x.shape.length), reverse }, x.dtype, x.shape);
}

export function softmax(x: Value, axis = -1): Value<"softmax"> {
  needFloat("softmax", x);
  return makeValue("softmax", [x], { axis: normAxis("softmax", axis, x.shape.length) }, x.dtype, x.shape);
}

export function logSoftmax(x: Value, axis = -1): Value<"logSoftmax"> {
  needFloat("logSoftmax", x);
  return makeValue("logSoftmax", [x], { axis: normAxis("logSoftmax", axis, x.shape.length) }, x.dtype, x.shape);
}

/** LayerNorm over the last axis (Ba et al. 2016), as ONNX LayerNormalization. */
export function layerNorm(x: Value, weight: Value, bias: Value, epsilon: number): Value<"layerNorm"> {
  needFloat("layerNorm", x);
  sameDtype("layerNorm", x, weight);
  sameDtype("layerNorm", x, bias);
  const d = x.shape[x.shape.length - 1];
  for (const p of [weight, bias]) {
    if (p.shape.length !== 1 || p.shape[0] !== d) {
      shapeError("layerNorm", `weight and bias must be [${d}] for input ${formatShape(x.shape)}, got ${formatShape(p.shape)}`);
    }
  }
  return makeValue("layerNorm", [x, weight, bias], { epsilon }, x.dtype, x.shape);
}

/**
 * The mean or 1/√(variance + ε) over the last axis [..., 1] that a layer norm computed on its way (ORT's
 * LayerNormalization returns both beside its output; an RMS norm's SimplifiedLayerNormalization returns
 * 1/√(mean(x²) + ε)): gradient rules read them instead of recomputing.
 */
export function layerNormStat(norm: Value<"layerNorm" | "rmsNorm">, stat: "mean" | "invStdDev"): Value<"layerNormStat"> {
  if (norm.op === "rmsNorm" && stat === "mean") fail("usage", "an RMS norm keeps no mean", { op: "layerNormStat" });
  return makeValue("layerNormStat", [norm], { stat }, norm.dtype, [...norm.shape.slice(0, -1), 1]);
}

/** RMSNorm over the last axis (Zhang & Sennrich 2019): x / √(mean(x²) + ε) · w, as ORT's SimplifiedLayerNormalization. */
export function rmsNorm(x: Value, weight: Value, epsilon: number): Value<"rmsNorm"> {
  needFloat("rmsNorm", x);
  sameDtype("rmsNorm", x, weight);
  const d = x.shape[x.shape.length - 1];
  if (weight.shape.length !== 1 || weight.shape[0] !== d) {
    shapeError("rmsNorm", `weight must be [${d}] for input ${formatShape(x.shape)}, got ${formatShape(weight.shape)}`);
  }
  return makeValue("rmsNorm", [x, weight], { epsilon }, x.dtype, x.shape);
}

// ---------------------------------------------------------------- movement

/** Reshape with ONNX's conventions: 0 copies the input dim at that index, -1 is inferred. */
export function reshape(x: Value, shape: number[]): Value<"reshape"> {
  if (shape.filter((d) => d === -1).length > 1) shapeError("reshape", `at most one -1 allowed in ${formatShape(shape)}`);
  const out: Dim[] = shape.map((d, i) => {
    if (d === 0) {
      if (i >= x.shape.length) shapeError("reshape", `0 at index ${i} but input ${formatShape(x.shape)} has rank ${x.shape.length}`);
      return x.shape[i];
    }
    return d;
  });
  const inferAt = out.indexOf(-1);
  const known = out.filter((_, i) => i !== inferAt);
  if (inferAt >= 0) out[inferAt] = divideDims(x.shape, known, shape);
  else if (!sameSize(x.shape, out)) shapeError("reshape", `cannot reshape ${formatShape(x.shape)} to ${formatShape(shape)}`);
  return makeValue("reshape", [x], { shape }, x.dtype, out);
}

/** Reshape x to the (run-time) shape of `like`: how gradients return to symbolic shapes. */
export function reshapeLike(x: Value, like: Value): Value {
  if (sameShape(x.shape, like.shape)) return x;
  if (!sameSize(x.shape, like.shape)) shapeError("reshapeLike", `${formatShape(x.shape)} and ${formatShape(like.shape)} differ in size`);
  return makeValue("reshapeLike", [x, like], {}, x.dtype, like.shape);
}

export function transpose(x: Value, perm: number[]): Value<"transpose"> {
  const rank = x.shape.length;
  const sorted = [...perm].sort((a, b) => a - b);
  if (perm.length !== rank || sorted.some((p, i) => p !== i)) {
    shapeError("transpose", `perm ${formatShape(perm)} is not a permutation of rank ${rank} (input ${formatShape(x.shape)})`);
  }
  return makeValue("transpose", [x], { perm }, x.dtype, perm.map((p) => x.shape[p]));
}

export function unsqueeze(x: Value, axes: number[]): Value<"unsqueeze"> {
  const rank = x.shape.length + axes.length;
  const norm = axes.map((a) => normAxis("unsqueeze", a, rank)).sort((p, q) => p - q);
  const out: Dim[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) out.push(norm.includes(i) ? 1 : x.shape[j++]);
  return makeValue("unsqueeze", [x], { axes: norm }, x.dtype, out);
}

export function squeeze(x: Value, axes: number[]): Value<"squeeze"> {
  const norm = axes.map((a) => normAxis("squeeze", a, x.shape.length));
  for (const a of norm) if (x.shape[a] !== 1) shapeError("squeeze", `dim ${a} of ${formatShape(x.shape)} is not 1`);
  return makeValue("squeeze", [x], { axes: norm }, x.dtype, x.shape.filter((_, i) => !norm.includes(i)));
}

/** Broadcast x to a shape with ONNX Expand's two-way rule (1s in `shape` keep x's dims). */
export function expand(x: Value, shape: number[]): Value<"expand"> {
  const out = broadcastShapes("expand", x.shape, shape);
  return makeValue("expand", [x], { shape }, x.dtype, out);
}

/** Broadcast x to the (run-time) shape of `like`. */
export function expandLike(x: Value, like: Value): Value {
  const out = broadcastShapes("expandLike", x.shape, like.shape);
  if (sameShape(out, x.shape)) return x;
  return makeValue("expandLike", [x, like], {}, x.dtype, out);
}

/** x[start:end] along one axis; negative indices count from the end, end may exceed the dim. */
export function slice(x: Value, axis: number, start: number, end: number): Value<"slice"> {
  const a = normAxis("slice", axis, x.shape.length);
  const d = x.shape[a];
  let size: Dim;
  if (typeof d === "number") {
    const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + d : i, 0), d);
    size = Math.max(clamp(end) - clamp(start), 0);
  } else if (start >= 0 && end >= 0 && end < Number.MAX_SAFE_INTEGER) {
    // Symbolic dim: trust a non-negative window; the runtime clamps it like numpy would.
    size = end - start;
  } else {
    if (start < 0 || end < Number.MAX_SAFE_INTEGER) shapeError("slice", `cannot slice symbolic dim ${d} with [${start}:${end}]`);
    // "[start:]" of a concatenated dim "P+seq" is "seq".
    size = start === 0 ? d : d.startsWith(`${start}+`) ? d.slice(`${start}+`.length) : `${d}-${start}`;
  }
  const out = [...x.shape];
  out[a] = size;
  return makeValue("slice", [x], { axis: a, start, end }, x.dtype, out);
}

/** Zero-pad one axis (the gradient of slice). */
export function pad(x: Value, axis: number, before: number, after: number): Value<"pad"> {
  const a = normAxis("pad", axis, x.shape.length);
  const d = x.shape[a];
  if (typeof d !== "number") shapeError("pad", `cannot pad symbolic dim ${d}`);
  const out = [...x.shape];
  out[a] = d + before + after;
  return makeValue("pad", [x], { axis: a, before, after }, x.dtype, out);
}

export function concat(xs: Value[], axis: number): Value<"concat"> {
  if (xs.length === 0) shapeError("concat", "needs at least one input");
  const rank = xs[0].shape.length;
  const a = normAxis("concat", axis, rank);
  for (const x of xs) {
    sameDtype("concat", xs[0], x);
    const ok = x.shape.length === rank && x.shape.every((d, i) => i === a || d === xs[0].shape[i]);
    if (!ok) shapeError("concat", `shapes ${xs.map((v) => formatShape(v.shape)).join(", ")} differ off axis ${a}`);
  }
  const out = [...xs[0].shape];
  out[a] = concatDim(xs.map((x) => x.shape[a]));
  return makeValue("concat", xs, { axis: a }, xs[0].dtype, out);
}

/**
 * The size of a concatenated axis: the sum when static; n copies of one run-time dim d make "n*d" (the
 * name a reshape gives the same size); otherwise the parts joined by "+" ("20+seq").
 */
function concatDim(dims: Dim[]): Dim {
  if (dims.length > 1 && typeof dims[0] === "string" && dims.every((d) => d === dims[0])) return `${dims.length}*${dims[0]}`;
  let total: Dim = 0;
  for (const d of dims) {
    total = typeof total === "number" && typeof d === "number" ? total + d : `${total === 0 ? "" : `${total}+`}${d}`;
  }
  return total;
}

/** Take slices of `data` along `axis` at integer `indices` (an embedding lookup on axis 0). */
export function gather(data: Value, indices: Value, axis = 0): Value<"gather"> {
  if (indices.dtype !== "int64" && indices.dtype !== "int32") fail("dtype", `indices must be int64 or int32, got ${indices.dtype}`, { op: "gather" });
  const a = normAxis("gather", axis, data.shape.length);
  const out = [...data.shape.slice(0, a), ...indices.shape, ...data.shape.slice(a + 1)];
  return makeValue("gather", [data, indices], { axis: a }, data.dtype, out);
}

/** zeros-like `data` with rows `indices` incremented by `updates` (the gradient of gather on axis 0). */
export function scatterAddRows(data: Value, indices: Value, updates: Value): Value<"scatterAddRows"> {
  sameDtype("scatterAddRows", data, updates);
  const expected = [...indices.shape, ...data.shape.slice(1)];
  if (!sameShape(expected, updates.shape)) {
    shapeError("scatterAddRows", `updates must be ${formatShape(expected)}, got ${formatShape(updates.shape)}`);
  }
  return makeValue("scatterAddRows", [data, indices, updates], {}, data.dtype, data.shape);
}

/** out[i][j] = data[i][indices[i][j]] on axis 1 (and likewise for other axes), as ONNX GatherElements. */
export function gatherElements(data: Value, indices: Value, axis: number): Value<"gatherElements"> {
  const a = normAxis("gatherElements", axis, data.shape.length);
  if (indices.shape.length !== data.shape.length) {
    shapeError("gatherElements", `indices ${formatShape(indices.shape)} must have the rank of data ${formatShape(data.shape)}`);
  }
  return makeValue("gatherElements", [data, indices], { axis: a }, data.dtype, indices.shape);
}

/** data with updates added at `indices` along `axis` (the gradient of gatherElements). */
export function scatterElementsAdd(data: Value, indices: Value, updates: Value, axis: number): Value<"scatterElementsAdd"> {
  sameDtype("scatterElementsAdd", data, updates);
  if (!sameShape(indices.shape, updates.shape)) {
    shapeError("scatterElementsAdd", `indices ${formatShape(indices.shape)} and updates ${formatShape(updates.shape)} differ`);
  }
  const a = normAxis("scatterElementsAdd", axis, data.shape.length);
  return makeValue("scatterElementsAdd", [data, indices, updates], { axis: a }, data.dtype, data.shape);
}

// ---------------------------------------------------------------- shape helpers

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Equal element counts, comparing symbolic dims as a multiset of names. */
function sameSize(a: Shape, b: Shape): boolean {
  const x = factors(a);
  const y = factors(b);
  return x.n === y.n && x.syms.sort().join("*") === y.syms.sort().join("*");
}

/** A shape's size as a number times symbolic factors ("8*batch" counts as 8 and "batch"). */
function factors(shape: Shape): { n: number; syms: string[] } {
  let n = 1;
  const syms: string[] = [];
  for (const d of shape) {
    if (typeof d === "number") n *= d;
    else for (const f of d.split("*")) /^\d+$/.test(f) ? (n *= Number(f)) : syms.push(f);
  }
  return { n, syms };
}

/** The dim that -1 stands for in a reshape: size(input) / size(known), kept symbolic when needed. */
function divideDims(input: Shape, known: Dim[], requested: number[]): Dim {
  const { n, syms } = factors(input);
  const k = factors(known);
  const m = k.n;
  for (const s of k.syms) {
    const at = syms.indexOf(s);
    if (at < 0) shapeError("reshape", `cannot reshape ${formatShape(input)} to ${formatShape(requested)}`);
    syms.splice(at, 1);
  }
  if (n % m !== 0) shapeError("reshape", `cannot reshape ${formatShape(input)} to ${formatShape(requested)}`);
  const rest = n / m;
  if (syms.length === 0) return rest;
  return [...(rest === 1 ? [] : [String(rest)]), ...syms.sort()].join("*");
}

/**
 * Mean cross-entropy of logits [N, C] against integer targets [N], skipping `ignoreIndex`. One op with a
 * gradient rule of its own (softmax − one-hot, scaled), which needs fewer [N, C] temporaries than the
 * gradient of the composite would. With no counted target the loss is 0.
 */
export function softmaxCrossEntropy(logits: Value, targets: Value, ignoreIndex = -100): Value<"softmaxCrossEntropy"> {
  needFloat("softmaxCrossEntropy", logits);
  if (targets.dtype !== "int64" && targets.dtype !== "int32") fail("dtype", `targets must be int64 or int32, got ${targets.dtype}`, { op: "softmaxCrossEntropy" });
  if (logits.shape.length !== 2 || targets.shape.length !== 1 || logits.shape[0] !== targets.shape[0]) {
    shapeError("softmaxCrossEntropy", `needs logits [N, C] and targets [N], got ${formatShape(logits.shape)} and ${formatShape(targets.shape)}`);
  }
  return makeValue("softmaxCrossEntropy", [logits, targets], { ignoreIndex }, logits.dtype, []);
}
