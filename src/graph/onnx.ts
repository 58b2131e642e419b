/**
 * ONNX export: the second table over the op set, mapping each primitive to ONNX nodes (opset 18).
 * Graph inputs (tokens, prompts, frozen weights) stay inputs, so one copy of the weights in memory
 * feeds every program built over them; only small constants become initializers.
 */
import protobuf from "protobufjs";
import { fail } from "../util/errors.js";
import { type AnyTypedArray, type DType, type OpKind, type Shape, type Value, topoSort } from "./ir.js";
import { ONNX_PROTO } from "./onnx-proto.js";
import { GELU_TANH_2U, arrayOf } from "./ops.js";

export const OPSET = 18;
/** ONNX Runtime's contrib ops (FusedMatMul, MatMulNBits). */
const MS_DOMAIN = "com.microsoft";

const ModelProto = protobuf.parse(ONNX_PROTO).root.lookupType("onnx.ModelProto");

const ONNX_DTYPE: Record<DType, number> = { float32: 1, uint8: 2, int32: 6, int64: 7, bool: 9, float64: 11 };
const INT64_MAX = 9223372036854775807n;
enum Attr {
  FLOAT = 1,
  INT = 2,
  TENSOR = 4,
  INTS = 7,
}

interface NodeProto {
  opType: string;
  domain?: string;
  input: string[];
  output: string[];
  attribute?: object[];
}
interface TensorProto {
  name: string;
  dims: number[];
  dataType: number;
  rawData: Uint8Array;
}

export interface IoSpec {
  name: string;
  dtype: DType;
  shape: Shape;
}

export interface OnnxModel {
  bytes: Uint8Array;
  inputs: IoSpec[];
  outputs: IoSpec[];
}

/** Emits the nodes of one graph; `emit` rules call its helpers. */
class Emitter {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private counter = 0;

  fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  node(opType: string, input: string[], output: string[], attribute: object[] = [], domain?: string): void {
    this.nodes.push({ opType, input, output, attribute, ...(domain === undefined ? {} : { domain }) });
  }

  /** A small constant initializer, returning its name. */
  tensor(data: AnyTypedArray, dims: number[], dtype: DType): string {
    const name = this.fresh("const");
    this.initializers.push({ name, dims, dataType: ONNX_DTYPE[dtype], rawData: bytesOf(data) });
    return name;
  }

  ints(values: (number | bigint)[]): string {
    return this.tensor(BigInt64Array.from(values.map((v) => (typeof v === "bigint" ? v : BigInt(v)))), [values.length], "int64");
  }

  shapeOf(x: string): string {
    const out = this.fresh("shape");
    this.node("Shape", [x], [out]);
    return out;
  }
}

const int = (name: string, i: number) => ({ name, type: Attr.INT, i });
const ints = (name: string, v: number[]) => ({ name, type: Attr.INTS, ints: v });

type EmitRule<K extends OpKind> = (e: Emitter, y: Value<K>, ins: string[], out: string) => void;
const simple =
  (opType: string): EmitRule<OpKind> =>
  (e, _y, ins, out) =>
    e.node(opType, ins, [out]);

const emitRules: { [K in OpKind]: EmitRule<K> } = {
  input: () => undefined,
  constant: (e, y, _ins, out) => {
    e.initializers.push({ name: out, dims: y.shape as number[], dataType: ONNX_DTYPE[y.dtype], rawData: bytesOf(y.attrs.data) });
  },
  add: simple("Add"),
  sub: simple("Sub"),
  mul: simple("Mul"),
  div: simple("Div"),
  pow: (e, y, [x], out) => e.node("Pow", [x, e.tensor(arrayOf(y.dtype, [y.attrs.exponent]), [], y.dtype)], [out]),
  neg: simple("Neg"),
  sqrt: simple("Sqrt"),
  reciprocal: simple("Reciprocal"),
  exp: simple("Exp"),
  log: simple("Log"),
  tanh: simple("Tanh"),
  erf: simple("Erf"),
  sigmoid: simple("Sigmoid"),
  geluTanh: (e, y, [x], out) => {
    // x·σ(2u), 2u = x(a + bx²), node for node as the gradient rule recomputes σ(2u): ORT computes it once.
    const scalar = (v: number) => e.tensor(arrayOf(y.dtype, [v]), [], y.dtype);
    const [x2, bx2, inner, twoU, s] = ["x2", "bx2", "inner", "twoU", "s"].map((h) => e.fresh(h));
    e.node("Mul", [x, x], [x2]);
    e.node("Mul", [x2, scalar(GELU_TANH_2U[1])], [bx2]);
    e.node("Add", [bx2, scalar(GELU_TANH_2U[0])], [inner]);
    e.node("Mul", [x, inner], [twoU]);
    e.node("Sigmoid", [twoU], [s]);
    e.node("Mul", [x, s], [out]);
  },
  silu: (e, _y, [x], out) => {
    // x·σ(x), which ORT fuses into QuickGelu where nothing else reads σ(x) (a forward; a gradient reads it).
    const s = e.fresh("s");
    e.node("Sigmoid", [x], [s]);
    e.node("Mul", [x, s], [out]);
  },
  sin: simple("Sin"),
  cos: simple("Cos"),
  equal: simple("Equal"),
  less: simple("Less"),
  greater: simple("Greater"),
  and: simple("And"),
  not: simple("Not"),
  where: simple("Where"),
  cast: (e, y, ins, out) => e.node("Cast", ins, [out], [int("to", ONNX_DTYPE[y.attrs.to])]),
  matmul: (e, y, [a, b], out) => {
    const { transA, transB, alpha } = y.attrs;
    if (!transA && !transB && alpha === 1) return e.node("MatMul", [a, b], [out]);
    // ORT's FusedMatMul takes the transposes and the scale in the kernel; it has float32 only.
    if (y.dtype === "float32") {
      const attrs = [int("transA", +transA), int("transB", +transB), { name: "alpha", type: Attr.FLOAT, f: alpha }];
      return e.node("FusedMatMul", [a, b], [out], attrs, MS_DOMAIN);
    }
    const swapped = (x: string, rank: number) => {
      const t = e.fresh("swapped");
      const perm = [...Array(rank).keys()];
      [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
      e.node("Transpose", [x], [t], [ints("perm", perm)]);
      return t;
    };
    const product = alpha === 1 ? out : e.fresh("product");
    e.node("MatMul", [transA ? swapped(a, y.inputs[0].shape.length) : a, transB ? swapped(b, y.inputs[1].shape.length) : b], [product]);
    if (alpha !== 1) e.node("Mul", [product, e.tensor(arrayOf(y.dtype, [alpha]), [], y.dtype)], [out]);
  },
  gemm: (e, y, ins, out) => e.node("Gemm", ins, [out], [int("transA", +y.attrs.transA), int("transB", +y.attrs.transB)]),
  reduceSum: (e, y, [x], out) => e.node("ReduceSum", [x, e.ints(y.attrs.axes)], [out], [int("keepdims", +y.attrs.keepdims)]),
  reduceMean: (e, y, [x], out) => e.node("ReduceMean", [x, e.ints(y.attrs.axes)], [out], [int("keepdims", +y.attrs.keepdims)]),
  reduceMax: (e, y, [x], out) => e.node("ReduceMax", [x, e.ints(y.attrs.axes)], [out], [int("keepdims", +y.attrs.keepdims)]),
  cumSum: (e, y, [x], out) => e.node("CumSum", [x, e.ints([y.attrs.axis])], [out], [int("reverse", +y.attrs.reverse)]),
  softmax: (e, y, ins, out) => e.node("Softmax", ins, [out], [int("axis", y.attrs.axis)]),
  logSoftmax: (e, y, ins, out) => e.node("LogSoftmax", ins, [out], [int("axis", y.attrs.axis)]),
  layerNorm: (e, y, ins, out) =>
    e.node("LayerNormalization", ins, [out, layerNormStatName(out, "mean"), layerNormStatName(out, "invStdDev")], [int("axis", -1), { name: "epsilon", type: Attr.FLOAT, f: y.attrs.epsilon }]),
  // The norm's node wrote it (ORT drops the Identity); in float32, which ORT's CPU kernel keeps statistics in.
  layerNormStat: (e, y, [norm], out) =>
    y.dtype === "float32" ? e.node("Identity", [layerNormStatName(norm, y.attrs.stat)], [out]) : e.node("Cast", [layerNormStatName(norm, y.attrs.stat)], [out], [int("to", ONNX_DTYPE[y.dtype])]),
  rmsNorm: (e, y, ins, out) =>
    e.node("SimplifiedLayerNormalization", ins, [out, layerNormStatName(out, "invStdDev")], [int("axis", -1), { name: "epsilon", type: Attr.FLOAT, f: y.attrs.epsilon }]),
  reshape: (e, y, [x], out) => e.node("Reshape", [x, e.ints(y.attrs.shape)], [out]),
  reshapeLike: (e, _y, [x, like], out) => e.node("Reshape", [x, e.shapeOf(like)], [out]),
  transpose: (e, y, ins, out) => e.node("Transpose", ins, [out], [ints("perm", y.attrs.perm)]),
  unsqueeze: (e, y, [x], out) => e.node("Unsqueeze", [x, e.ints(y.attrs.axes)], [out]),
  squeeze: (e, y, [x], out) => e.node("Squeeze", [x, e.ints(y.attrs.axes)], [out]),
  expand: (e, y, [x], out) => e.node("Expand", [x, e.ints(y.attrs.shape)], [out]),
  expandLike: (e, _y, [x, like], out) => e.node("Expand", [x, e.shapeOf(like)], [out]),
  slice: (e, y, [x], out) => {
    const end = y.attrs.end >= Number.MAX_SAFE_INTEGER ? INT64_MAX : y.attrs.end;
    e.node("Slice", [x, e.ints([y.attrs.start]), e.ints([end]), e.ints([y.attrs.axis])], [out]);
  },
  pad: (e, y, [x], out) => {
    // Full-rank pads and no `axes` input: ORT's transpose optimizer mis-permutes Pad's axes form.
    const rank = y.shape.length;
    const pads = new Array<number>(2 * rank).fill(0);
    pads[y.attrs.axis] = y.attrs.before;
    pads[rank + y.attrs.axis] = y.attrs.after;
    e.node("Pad", [x, e.ints(pads), e.tensor(arrayOf(y.dtype, [0]), [], y.dtype)], [out]);
  },
  concat: (e, y, ins, out) => e.node("Concat", ins, [out], [int("axis", y.attrs.axis)]),
  gather: (e, y, ins, out) => e.node("Gather", ins, [out], [int("axis", y.attrs.axis)]),
  scatterAddRows: (e, y, [data, idx, upd], out) => {
    const zeros = e.fresh("zeros");
    const zero = { name: "value", type: Attr.TENSOR, t: { dims: [1], dataType: ONNX_DTYPE[y.dtype], rawData: bytesOf(arrayOf(y.dtype, [0])) } };
    e.node("ConstantOfShape", [e.shapeOf(data)], [zeros], [zero]);
    const idx64 = e.fresh("idx64");
    e.node("Cast", [idx], [idx64], [int("to", ONNX_DTYPE.int64)]);
    const idxNd = e.fresh("idxNd");
    e.node("Unsqueeze", [idx64, e.ints([-1])], [idxNd]);
    e.node("ScatterND", [zeros, idxNd, upd], [out], [{ name: "reduction", type: 3, s: new TextEncoder().encode("add") }]);
  },
  gatherElements: (e, y, ins, out) => e.node("GatherElements", ins, [out], [int("axis", y.attrs.axis)]),
  scatterElementsAdd: (e, y, ins, out) =>
    e.node("ScatterElements", ins, [out], [int("axis", y.attrs.axis), { name: "reduction", type: 3, s: new TextEncoder().encode("add") }]),
  softmaxCrossEntropy: (e, y, [z, t], out) => {
    // As LogSoftmax + GatherElements rather than ONNX's SoftmaxCrossEntropyLoss, whose ORT kernel keeps
    // several [N, C] temporaries (measured: +370 MB for a GPT-2 LM head over 864 positions).
    const dtype = y.dtype;
    const n = (hint: string) => e.fresh(hint);
    const [logp, ignored, safe, safe2, picked, pickedN, counted, keep, weighted, total, count, positive, divisor, mean] =
      ["logp", "ignored", "safe", "safe2", "picked", "pickedN", "counted", "keep", "weighted", "total", "count", "positive", "divisor", "mean"].map(n);
    const targetType = y.inputs[1].dtype;
    e.node("LogSoftmax", [z], [logp], [int("axis", 1)]); // as o.logSoftmax(z, -1) emits it, so ORT computes the gradient's once
    e.node("Equal", [t, e.tensor(arrayOf(targetType, [y.attrs.ignoreIndex]), [], targetType)], [ignored]);
    e.node("Where", [ignored, e.tensor(arrayOf(targetType, [0]), [], targetType), t], [safe]);
    e.node("Unsqueeze", [safe, e.ints([1])], [safe2]);
    e.node("GatherElements", [logp, safe2], [picked], [int("axis", 1)]);
    e.node("Squeeze", [picked, e.ints([1])], [pickedN]);
    e.node("Not", [ignored], [keep]);
    e.node("Cast", [keep], [counted], [int("to", ONNX_DTYPE[dtype])]);
    e.node("Mul", [pickedN, counted], [weighted]);
    e.node("ReduceSum", [weighted, e.ints([0])], [total], [int("keepdims", 0)]);
    e.node("ReduceSum", [counted, e.ints([0])], [count], [int("keepdims", 0)]);
    e.node("Greater", [count, e.tensor(arrayOf(dtype, [0]), [], dtype)], [positive]);
    e.node("Where", [positive, count, e.tensor(arrayOf(dtype, [1]), [], dtype)], [divisor]);
    e.node("Div", [total, divisor], [mean]);
    e.node("Neg", [mean], [out]);
  },
  matMulNBits: (e, y, ins, out) => {
    const { bits, blockSize, k, n } = y.attrs;
    // accuracy_level 4: the CPU kernel quantises each block of x to int8 and accumulates in int32.
    const attrs = [int("K", k), int("N", n), int("bits", bits), int("block_size", blockSize), int("accuracy_level", 4)];
    e.node("MatMulNBits", ins, [out], attrs, MS_DOMAIN);
  },
};

/** The name of a norm's extra output (its mean or 1/√(σ² + ε)), given its main output's name. */
const layerNormStatName = (norm: string, stat: "mean" | "invStdDev") => `${norm}_${stat}`;

/** Serialise the graph computing `outputs` (keyed by output name) to an ONNX ModelProto. */
export function toOnnx(outputs: Record<string, Value>, graphName = "softprompt"): OnnxModel {
  const e = new Emitter();
  const order = topoSort(Object.values(outputs));
  const names = new Map<number, string>();
  const inputs: IoSpec[] = [];
  const inputNames = new Set<string>();
  for (const v of order) {
    if (v.op === "input") {
      const name = (v as Value<"input">).attrs.name;
      if (inputNames.has(name)) fail("shape", `two different graph inputs are both named "${name}"`, { op: "input" });
      inputNames.add(name);
      names.set(v.id, name);
      inputs.push({ name, dtype: v.dtype, shape: v.shape });
      continue;
    }
    const out = `${v.op}_${v.id}`;
    names.set(v.id, out);
    const rule = emitRules[v.op] as EmitRule<typeof v.op>;
    rule(e, v as never, v.inputs.map((i) => names.get(i.id)!), out);
  }
  const outputSpecs: IoSpec[] = [];
  for (const [name, v] of Object.entries(outputs)) {
    if (inputNames.has(name)) fail("shape", `output "${name}" has the name of an input`, { op: "output" });
    e.node("Identity", [names.get(v.id)!], [name]);
    outputSpecs.push({ name, dtype: v.dtype, shape: v.shape });
  }
  const graph = {
    name: graphName,
    node: e.nodes,
    initializer: e.initializers,
    input: inputs.map(valueInfo),
    output: outputSpecs.map(valueInfo),
  };
  const opsetImport = [{ domain: "", version: OPSET }];
  if (e.nodes.some((n) => n.domain === MS_DOMAIN)) opsetImport.push({ domain: MS_DOMAIN, version: 1 });
  const model = { irVersion: 8, opsetImport, producerName: "softprompt", graph };
  const bytes = ModelProto.encode(ModelProto.fromObject(model)).finish();
  return { bytes, inputs, outputs: outputSpecs };
}

function valueInfo({ name, dtype, shape }: IoSpec): object {
  // Derived symbolic dims ("5+seq") are left unnamed: ONNX Runtime infers them.
  const dim = shape.map((d) => (typeof d === "number" ? { dimValue: d } : /^[A-Za-z_]\w*$/.test(d) ? { dimParam: d } : {}));
  return { name, type: { tensorType: { elemType: ONNX_DTYPE[dtype], shape: { dim } } } };
}

function bytesOf(data: AnyTypedArray): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
