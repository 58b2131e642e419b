/**
 * The gradient rules: one line or a few per primitive op, as in tinygrad's gradient table.
 * A rule gets the output's gradient `g` and the node `y` (its inputs and attributes) and returns
 * one gradient per input, or null where an input has none (indices, conditions, comparisons).
 * Broadcast inputs get their gradient summed back to their own shape by `unbroadcast`. Rules may rebuild
 * a forward value node for node as onnx.ts emits it (σ in GELU and SiLU, the cross-entropy's log-softmax):
 * ORT's common-subexpression elimination computes it once.
 */
import { type OpKind, type Shape, type Value, shapeError } from "./ir.js";
import * as o from "./ops.js";
import { fail } from "../util/errors.js";

type Grads = (Value | null)[];
export type VjpRule<K extends OpKind> = (g: Value, y: Value<K>) => Grads;

const none: VjpRule<OpKind> = (_g, y) => y.inputs.map(() => null);

export const vjp: { [K in OpKind]: VjpRule<K> } = {
  input: () => [],
  constant: () => [],
  add: (g, { inputs: [a, b] }) => [unbroadcast(g, a), unbroadcast(g, b)],
  sub: (g, { inputs: [a, b] }) => [unbroadcast(g, a), unbroadcast(o.neg(g), b)],
  mul: (g, { inputs: [a, b] }) => [unbroadcast(o.mul(g, b), a), unbroadcast(o.mul(g, a), b)],
  div: (g, y) => {
    const [a, b] = y.inputs;
    // d(a/b)/db = -a/b² = -y/b
    return [unbroadcast(o.div(g, b), a), unbroadcast(o.neg(o.div(o.mul(g, y), b)), b)];
  },
  pow: (g, { inputs: [x], attrs: { exponent: p } }) => [o.mul(g, o.mul(o.pow(x, p - 1), p))],
  neg: (g) => [o.neg(g)],
  sqrt: (g, y) => [o.div(g, o.mul(y, 2))],
  reciprocal: (g, y) => [o.neg(o.mul(g, o.mul(y, y)))],
  exp: (g, y) => [o.mul(g, y)],
  log: (g, { inputs: [x] }) => [o.div(g, x)],
  tanh: (g, y) => [o.mul(g, o.sub(1, o.mul(y, y)))],
  // d erf(x)/dx = 2/√π · exp(-x²)
  erf: (g, { inputs: [x] }) => [o.mul(g, o.mul(o.exp(o.neg(o.mul(x, x))), 2 / Math.sqrt(Math.PI)))],
  sigmoid: (g, y) => [o.mul(g, o.mul(y, o.sub(1, y)))],
  geluTanh: (g, y) => {
    // y = x·s, s = σ(x(a + bx²)): dy/dx = s + x·s(1 - s)(a + 3bx²) = s + y(1 - s)(a + 3bx²). s is rebuilt node for
    // node as the forward emits it, so ORT computes it once: 7 passes over [tokens, 4d], where autodiff's took 13.
    const [x] = y.inputs;
    const [a, b] = o.GELU_TANH_2U;
    const x2 = o.mul(x, x);
    const s = o.sigmoid(o.mul(x, o.add(o.mul(x2, b), a)));
    const slope = o.add(o.mul(o.mul(y, o.sub(1, s)), o.add(o.mul(x2, 3 * b), a)), s);
    return [o.mul(g, slope)];
  },
  // y = x·s, s = σ(x): dy/dx = s + x·s(1 - s) = s + y(1 - s), s rebuilt as the forward emits it (ORT computes it once).
  silu: (g, y) => {
    const s = o.sigmoid(y.inputs[0]);
    return [o.mul(g, o.add(o.mul(y, o.sub(1, s)), s))];
  },
  sin: (g, { inputs: [x] }) => [o.mul(g, o.cos(x))],
  cos: (g, { inputs: [x] }) => [o.neg(o.mul(g, o.sin(x)))],
  equal: none,
  less: none,
  greater: none,
  and: none,
  not: none,
  where: (g, { inputs: [c, a, b] }) => [null, unbroadcast(o.where(c, g, 0), a), unbroadcast(o.where(c, 0, g), b)],
  // Casting between float types passes the gradient through; to or from ints there is none.
  cast: (g, { inputs: [x] }) => [x.dtype === "float32" || x.dtype === "float64" ? o.cast(g, x.dtype) : null],
  matmul: (g, { inputs: [a, b], attrs: { transA, transB, alpha } }) => {
    // As gemm's rule, per batch and scaled by alpha; broadcast batch dims summed back.
    const dA = transA ? o.matmul(b, g, { transA: transB, transB: true, alpha }) : o.matmul(g, b, { transB: !transB, alpha });
    const dB = transB ? o.matmul(g, a, { transA: true, transB: transA, alpha }) : o.matmul(a, g, { transA: !transA, alpha });
    return [unbroadcast(dA, a), unbroadcast(dB, b)];
  },
  gemm: (g, { inputs: [a, b], attrs: { transA, transB } }) => {
    // With A' = op(A), B' = op(B): dA' = g·B'ᵀ and dB' = A'ᵀ·g, transposed back where op transposed.
    const dA = transA ? o.gemm(b, g, { transA: transB, transB: true }) : rowScaledFirst(g, (d) => o.gemm(d, b, { transB: !transB }));
    const dB = transB ? o.gemm(g, a, { transA: true, transB: transA }) : o.gemm(a, g, { transA: !transA });
    return [dA, dB];
  },
  reduceSum: (g, { inputs: [x], attrs }) => [o.expandLike(keepReduced(g, attrs), x)],
  reduceMean: (g, { inputs: [x], attrs }) => [o.div(o.expandLike(keepReduced(g, attrs), x), reducedCount(x.shape, attrs.axes))],
  // The gradient goes to every position equal to the max (ties each get all of it).
  // Each input feeds every running sum after it (before it, reversed): the sums taken the other way.
  cumSum: (g, { attrs: { axis, reverse } }) => [o.cumSum(g, axis, !reverse)],
  reduceMax: (g, y) => {
    const [x] = y.inputs;
    const isMax = o.equal(x, o.expandLike(keepReduced(y, y.attrs), x));
    return [o.where(isMax, o.expandLike(keepReduced(g, y.attrs), x), 0)];
  },
  softmax: (g, y) => [o.mul(y, o.sub(g, o.reduceSum(o.mul(g, y), [y.attrs.axis], true)))],
  logSoftmax: (g, y) => [o.sub(g, o.mul(o.exp(y), o.reduceSum(g, [y.attrs.axis], true)))],
  layerNorm: (g, y) => {
    // With the forward's μ and r = 1/√(σ² + ε), x̂ = (x - μ)·r, ĝ = g·w:
    // dx = r·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)) = r·(ĝ - mean(ĝ)) - (x - μ)·r³·mean(ĝ·(x - μ)).
    const [x, w] = y.inputs;
    const r = o.layerNormStat(y, "invStdDev");
    const xc = o.sub(x, o.layerNormStat(y, "mean"));
    const gh = o.mul(g, w);
    const k = o.mul(o.mul(o.mul(r, r), r), o.reduceMean(o.mul(gh, xc), [-1], true));
    const dx = o.sub(o.mul(o.sub(gh, o.reduceMean(gh, [-1], true)), r), o.mul(xc, k));
    const lead = x.shape.map((_, i) => i).slice(0, -1);
    return [dx, o.reduceSum(o.mul(g, o.mul(xc, r)), lead), o.reduceSum(g, lead)];
  },
  // Read only inside the norms' own gradient rules: second derivatives through a norm are not built.
  layerNormStat: () => fail("grad", "second derivatives through a norm are not supported", { op: "layerNormStat" }),
  rmsNorm: (g, y) => {
    // With the forward's r = 1/√(mean(x²) + ε): dx = r·ĝ - x·r³·mean(ĝ·x), ĝ = g·w.
    const [x, w] = y.inputs;
    const r = o.layerNormStat(y, "invStdDev");
    const gh = o.mul(g, w);
    const dx = o.sub(o.mul(gh, r), o.mul(x, o.mul(o.mul(o.mul(r, r), r), o.reduceMean(o.mul(gh, x), [-1], true))));
    const lead = x.shape.map((_, i) => i).slice(0, -1);
    return [dx, o.reduceSum(o.mul(g, o.mul(x, r)), lead)];
  },
  reshape: (g, { inputs: [x] }) => [o.reshapeLike(g, x)],
  reshapeLike: (g, { inputs: [x] }) => [o.reshapeLike(g, x), null],
  transpose: (g, { attrs: { perm } }) => [o.transpose(g, inversePerm(perm))],
  unsqueeze: (g, { attrs: { axes } }) => [o.squeeze(g, axes)],
  squeeze: (g, { attrs: { axes } }) => [o.unsqueeze(g, axes)],
  expand: (g, { inputs: [x] }) => [unbroadcast(g, x)],
  expandLike: (g, { inputs: [x] }) => [unbroadcast(g, x), null],
  slice: (g, { inputs: [x], attrs: { axis, start, end } }) => {
    const d = x.shape[axis];
    if (typeof d !== "number") shapeError("slice", `gradient of a slice needs a static dim, got ${d}`);
    const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + d : i, 0), d);
    const s = clamp(start);
    return [o.pad(g, axis, s, d - Math.max(clamp(end), s))];
  },
  pad: (g, { inputs: [x], attrs: { axis, before } }) => {
    const d = x.shape[axis] as number;
    return [o.slice(g, axis, before, before + d)];
  },
  concat: (g, { inputs, attrs: { axis } }) => {
    let offset = 0;
    return inputs.map((x, i) => {
      const d = x.shape[axis];
      if (typeof d !== "number") {
        // Only the last part may be symbolic: it takes everything after the others.
        if (i !== inputs.length - 1) shapeError("concat", `gradient needs static sizes for all but the last input, got ${d}`);
        return o.slice(g, axis, offset, Number.MAX_SAFE_INTEGER);
      }
      const part = o.slice(g, axis, offset, offset + d);
      offset += d;
      return part;
    });
  },
  gather: (g, { inputs: [data, idx], attrs: { axis } }) => {
    if (axis !== 0) shapeError("gather", `gradient is implemented for axis 0, got axis ${axis}`);
    return [o.scatterAddRows(data, idx, g), null];
  },
  // d/d(data) is zero: the op reads `data` only for its shape and type.
  scatterAddRows: (g, { inputs: [, idx] }) => [null, null, o.gather(g, idx, 0)],
  gatherElements: (g, { inputs: [data, idx], attrs: { axis } }) => [o.scatterElementsAdd(zerosLike(data), idx, g, axis), null],
  scatterElementsAdd: (g, { inputs: [, idx], attrs: { axis } }) => [g, null, o.gatherElements(g, idx, axis)],
  // d mean(-log softmax(z)[t]) / dz = (softmax(z) - onehot(t)) · g / count, zero on ignored rows.
  softmaxCrossEntropy: (g, { inputs: [z, t], attrs: { ignoreIndex } }) => {
    const counted = o.not(o.equal(t, o.scalar(ignoreIndex, t.dtype))); // [N]
    const weight = o.cast(counted, z.dtype);
    const count = o.reduceSum(weight, [0], true); // [1]
    const scale = o.div(o.mul(weight, g), o.where(o.greater(count, 0), count, 1)); // [N]
    const safe = o.unsqueeze(o.where(counted, t, o.scalar(0, t.dtype)), [1]); // [N, 1]
    const minusOne = o.unsqueeze(o.neg(weight), [1]); // -1 at each counted target
    // softmax as exp of the forward's log-softmax (the same LogSoftmax node, which ORT computes once): one pass, not three.
    const delta = o.scatterElementsAdd(o.exp(o.logSoftmax(z, -1)), safe, minusOne, 1); // softmax - onehot
    return [o.mul(delta, o.unsqueeze(scale, [1])), null];
  },
  // Quantised weights are frozen and inference-only: nothing upstream of one may be trained through it.
  matMulNBits: () => fail("grad", "quantised weights are for inference only: train with float32 weights (no --quantize)", { op: "matMulNBits" }),
};

/**
 * `product(g)` for a product whose rows are g's rows; when g is d·s with s [N, 1] (a row scale, as the
 * cross-entropy's gradient is), s·product(d) instead: the same rows scaled after the product, whose output
 * (an LM head's [N, d]) is far smaller than g ([N, vocab]).
 */
function rowScaledFirst(g: Value, product: (g: Value) => Value): Value {
  if (g.op !== "mul") return product(g);
  const [d, s] = g.inputs;
  const isRowScale = s.shape.length === 2 && s.shape[1] === 1 && o.sameShape(d.shape, g.shape) && g.shape[1] !== 1;
  return isRowScale ? o.mul(product(d), s) : product(g);
}

/** Sum a broadcast gradient back to the shape of the input it came from. */
export function unbroadcast(g: Value, x: Value): Value {
  const extra = g.shape.length - x.shape.length;
  let out = g;
  if (extra > 0) out = o.reduceSum(out, range(extra), false);
  const axes = x.shape.flatMap((d, i) => (d === 1 && out.shape[i] !== 1 ? [i] : []));
  if (axes.length > 0) out = o.reduceSum(out, axes, true);
  return out;
}

function zerosLike(x: Value): Value {
  return o.expandLike(o.scalar(0, x.dtype), x);
}

function keepReduced(g: Value, { axes, keepdims }: { axes: number[]; keepdims: boolean }): Value {
  return keepdims ? g : o.unsqueeze(g, axes);
}

function reducedCount(shape: Shape, axes: number[]): number {
  let n = 1;
  for (const a of axes) {
    const d = shape[a];
    if (typeof d !== "number") shapeError("reduceMean", `gradient needs static reduced dims, got ${d}`);
    n *= d;
  }
  return n;
}


function inversePerm(perm: number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return inv;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
