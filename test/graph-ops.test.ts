// Every primitive op (and the composites models use) checked against central finite differences.
import { describe, expect, it } from "vitest";
import * as o from "../src/graph/ops.js";
import * as nn from "../src/graph/nn.js";
import { gradCheck, type GradInput } from "./helpers/gradcheck.js";
import { Program } from "../src/runtime/session.js";
import { grad } from "../src/graph/autodiff.js";
import { type Value, topoSort } from "../src/graph/ir.js";

const ints = (dtype: "int64" | "int32", data: number[]) => ({ dtype, data });
const bools = (data: number[]) => ({ dtype: "bool" as const, data });
const positive = (n: number) => Array.from({ length: n }, (_, i) => 0.5 + ((i * 7) % 11) / 5);

type Case = [name: string, build: (x: Value[]) => Value, inputs: GradInput[], opts?: { dtype?: "float32"; tol?: number; eps?: number }];

const cases: Case[] = [
  ["add (broadcast)", ([a, b]) => o.add(a, b), [{ shape: [2, 3] }, { shape: [3] }]],
  ["sub (broadcast both)", ([a, b]) => o.sub(a, b), [{ shape: [2, 1] }, { shape: [1, 3] }]],
  ["mul (broadcast)", ([a, b]) => o.mul(a, b), [{ shape: [2, 3, 4] }, { shape: [3, 1] }]],
  ["div", ([a, b]) => o.div(a, b), [{ shape: [2, 3] }, { shape: [2, 3], data: positive(6) }]],
  ["pow", ([a]) => o.pow(a, 3), [{ shape: [5] }]],
  ["pow (fractional)", ([a]) => o.pow(a, -0.5), [{ shape: [5], data: positive(5) }]],
  ["neg", ([a]) => o.neg(a), [{ shape: [4] }]],
  ["sqrt", ([a]) => o.sqrt(a), [{ shape: [4], data: positive(4) }]],
  ["reciprocal", ([a]) => o.reciprocal(a), [{ shape: [4], data: positive(4) }]],
  ["exp", ([a]) => o.exp(a), [{ shape: [2, 3] }]],
  ["log", ([a]) => o.log(a), [{ shape: [4], data: positive(4) }]],
  ["tanh", ([a]) => o.tanh(a), [{ shape: [2, 3] }]],
  // ORT implements Erf in float32 only: checked there, with a step and tolerance sized for it.
  ["erf", ([a]) => o.erf(a), [{ shape: [2, 3] }], { dtype: "float32", tol: 2e-3 }],
  ["sigmoid", ([a]) => o.sigmoid(a), [{ shape: [2, 3] }]],
  ["geluTanh", ([a]) => o.geluTanh(a), [{ shape: [2, 3] }]],
  // ORT fuses x·σ(x) into QuickGelu, which it implements in float32 only.
  ["silu", ([a]) => o.silu(a), [{ shape: [2, 3] }], { dtype: "float32", tol: 2e-3 }],
  ["sin", ([a]) => o.sin(a), [{ shape: [4] }]],
  ["cos", ([a]) => o.cos(a), [{ shape: [4] }]],
  ["where", ([c, a, b]) => o.where(c, a, b), [{ shape: [2, 3], fixed: bools([1, 0, 1, 0, 0, 1]) }, { shape: [2, 3] }, { shape: [3] }]],
  // Linear, so a large step is exact up to float32 rounding.
  ["cast f64→f32→f64", ([a]) => o.cast(o.cast(a, "float32"), "float64"), [{ shape: [3] }], { eps: 1e-2, tol: 1e-5 }],
  ["matmul", ([a, b]) => o.matmul(a, b), [{ shape: [3, 4] }, { shape: [4, 2] }]],
  ["matmul (batched, broadcast)", ([a, b]) => o.matmul(a, b), [{ shape: [2, 3, 4] }, { shape: [4, 5] }]],
  ["matmul (batch broadcast both)", ([a, b]) => o.matmul(a, b), [{ shape: [2, 1, 3, 4] }, { shape: [3, 4, 2] }]],
  ...[false, true].flatMap((ta) =>
    [false, true].map(
      (tb): Case => [
        `matmul transA=${ta} transB=${tb} alpha=0.5 (batch broadcast)`,
        ([a, b]) => o.matmul(a, b, { transA: ta, transB: tb, alpha: 0.5 }),
        [{ shape: ta ? [2, 1, 4, 3] : [2, 1, 3, 4] }, { shape: tb ? [3, 2, 4] : [3, 4, 2] }],
      ],
    ),
  ),
  // FusedMatMul, the float32 form of a transposed or scaled product, against finite differences in float32.
  ["matmul transA transB alpha (float32)", ([a, b]) => o.matmul(a, b, { transA: true, transB: true, alpha: 0.5 }), [{ shape: [2, 4, 3] }, { shape: [1, 2, 4] }], { dtype: "float32", tol: 2e-3 }],
  ...[false, true].flatMap((ta) =>
    [false, true].map(
      (tb): Case => [`gemm transA=${ta} transB=${tb}`, ([a, b]) => o.gemm(a, b, { transA: ta, transB: tb }), [{ shape: ta ? [4, 3] : [3, 4] }, { shape: tb ? [2, 4] : [4, 2] }]],
    ),
  ),
  // A row-scaled gradient (the cross-entropy's) is scaled after the product: checked through the LM head's shape of use.
  ["gemm then crossEntropy", ([h, w, t]) => nn.crossEntropy(o.gemm(h, w, { transB: true }), t), [{ shape: [4, 3] }, { shape: [5, 3] }, { shape: [4], fixed: ints("int64", [1, -100, 4, 0]) }]],
  ["reduceSum", ([a]) => o.reduceSum(a, [1]), [{ shape: [2, 3, 4] }]],
  ["reduceSum keepdims", ([a]) => o.reduceSum(a, [0, 2], true), [{ shape: [2, 3, 4] }]],
  ["reduceMean", ([a]) => o.reduceMean(a, [-1]), [{ shape: [2, 3, 4] }]],
  ["reduceMax", ([a]) => o.reduceMax(a, [1]), [{ shape: [2, 5] }]],
  ["cumSum", ([a]) => o.cumSum(a, 1), [{ shape: [2, 5] }]],
  ["cumSum reverse", ([a]) => o.cumSum(a, -1, true), [{ shape: [2, 3, 4] }]],
  ["softmax", ([a]) => o.softmax(a, -1), [{ shape: [2, 5] }]],
  ["softmax (axis 0)", ([a]) => o.softmax(a, 0), [{ shape: [3, 2] }]],
  ["logSoftmax", ([a]) => o.logSoftmax(a, -1), [{ shape: [2, 5] }]],
  ["layerNorm", ([x, w, b]) => o.layerNorm(x, w, b, 1e-5), [{ shape: [2, 3, 6] }, { shape: [6] }, { shape: [6] }]],
  ["rmsNorm", ([x, w]) => o.rmsNorm(x, w, 1e-6), [{ shape: [2, 3, 4] }, { shape: [4] }]],
  ["reshape", ([a]) => o.reshape(a, [0, -1]), [{ shape: [2, 3, 2] }]],
  ["transpose", ([a]) => o.transpose(a, [2, 0, 1]), [{ shape: [2, 3, 4] }]],
  ["unsqueeze", ([a]) => o.unsqueeze(a, [0, 2]), [{ shape: [2, 3] }]],
  ["squeeze", ([a]) => o.squeeze(a, [1]), [{ shape: [2, 1, 3] }]],
  ["expand", ([a]) => o.expand(a, [2, 1, 3, 4]), [{ shape: [3, 1] }]],
  ["expandLike", ([a, b]) => o.add(o.expandLike(a, b), b), [{ shape: [1, 4] }, { shape: [3, 4] }]],
  ["slice", ([a]) => o.slice(a, 1, 1, 3), [{ shape: [2, 4] }]],
  ["slice (negative start)", ([a]) => o.slice(a, -1, -2, Number.MAX_SAFE_INTEGER), [{ shape: [2, 4] }]],
  ["pad", ([a]) => o.pad(a, 0, 1, 2), [{ shape: [2, 3] }]],
  ["concat", ([a, b]) => o.concat([a, b], 1), [{ shape: [2, 2, 3] }, { shape: [2, 1, 3] }]],
  ["gather (rows, repeated)", ([d, i]) => o.gather(d, i, 0), [{ shape: [4, 3] }, { shape: [2, 3], fixed: ints("int64", [0, 2, 2, 3, 0, 0]) }]],
  ["gather (int32 indices)", ([d, i]) => o.gather(d, i, 0), [{ shape: [4, 3] }, { shape: [2], fixed: ints("int32", [3, 1]) }]],
  ["gather (axis 1, not differentiated)", ([d, i, w]) => o.add(o.gather(d, i, 1), w), [{ shape: [2, 4], fixed: { dtype: "float64" as never, data: [1, 2, 3, 4, 5, 6, 7, 8] } }, { shape: [2], fixed: ints("int64", [3, 0]) }, { shape: [2, 2] }]],
  ["gatherElements", ([d, i]) => o.gatherElements(d, i, 1), [{ shape: [3, 5] }, { shape: [3, 1], fixed: ints("int64", [4, 0, 2]) }]],
  ["scatterAddRows (updates)", ([d, i, u]) => o.scatterAddRows(d, i, u), [{ shape: [4, 2], fixed: { dtype: "float64" as never, data: [0, 0, 0, 0, 0, 0, 0, 0] } }, { shape: [3], fixed: ints("int64", [1, 1, 3]) }, { shape: [3, 2] }]],
  ["scatterElementsAdd", ([d, i, u]) => o.scatterElementsAdd(d, i, u, 1), [{ shape: [2, 4] }, { shape: [2, 2], fixed: ints("int64", [0, 3, 1, 1]) }, { shape: [2, 2] }]],
  ["a value used twice", ([a]) => o.mul(o.exp(a), a), [{ shape: [3] }]],
  // Adjacent windows [0, 2) and [2, 4) get one joined gradient; [1, 3) overlaps them and is added.
  ["slices that tile a value, and one that overlaps", ([a]) => o.add(o.mul(o.slice(a, 1, 0, 2), o.slice(a, 1, 2, 4)), o.slice(a, 1, 1, 3)), [{ shape: [2, 5] }]],
];

// Composites have no rules of their own; these check that their primitives compose correctly.
const causal = (t: number) => Array.from({ length: t * t }, (_, i) => (i % t <= Math.floor(i / t) ? 1 : 0));
const composites: Case[] = [
  ["gelu (erf)", ([a]) => nn.gelu(a), [{ shape: [2, 3] }], { dtype: "float32", tol: 2e-3 }],
  ["relu", ([a]) => nn.relu(a), [{ shape: [2, 3] }]],
  ["linear (in_out, bias)", ([x, w, b]) => nn.linear(x, w, b, "in_out"), [{ shape: [2, 3, 4] }, { shape: [4, 5] }, { shape: [5] }]],
  ["linear (out_in)", ([x, w]) => nn.linear(x, w, undefined, "out_in"), [{ shape: [2, 3, 4] }, { shape: [5, 4] }]],
  ["rotary", ([x, pos]) => { const t = nn.rotaryTables(pos, Float32Array.of(1, 0.1)); return nn.rotary(x, o.cast(t.cos, "float64"), o.cast(t.sin, "float64")); }, [{ shape: [1, 2, 3, 4] }, { shape: [1, 3], fixed: ints("int64", [0, 1, 5]) }]],
  ["attention (causal)", ([q, k, v, m]) => nn.attention(q, k, v, new nn.AttentionMask(m), 0.5), [{ shape: [1, 2, 3, 4] }, { shape: [1, 2, 3, 4] }, { shape: [1, 2, 3, 4] }, { shape: [1, 1, 3, 3], fixed: bools(causal(3)) }]],
  // Row 2's last key is padding. (A query with no visible key at all is checked below: its weights are
  // uniform whatever the scores, as in HF, so finite differences there see a flat function.)
  ["attention (grouped-query, padded)", ([q, k, v, m]) => nn.attention(q, k, v, new nn.AttentionMask(m), 0.5), [{ shape: [2, 4, 3, 2] }, { shape: [2, 2, 3, 2] }, { shape: [2, 2, 3, 2] }, { shape: [2, 1, 3, 3], fixed: bools([...causal(3), 1, 0, 0, 1, 1, 0, 1, 1, 0]) }]],
  ["crossEntropy (ignore -100)", ([z, t]) => nn.crossEntropy(z, t), [{ shape: [4, 5] }, { shape: [4], fixed: ints("int64", [1, -100, 4, 0]) }]],
  ["crossEntropy (nothing counted: 0, not NaN)", ([z, t]) => o.add(nn.crossEntropy(z, t), o.reduceSum(o.mul(z, 0.1), [0, 1])), [{ shape: [2, 3] }, { shape: [2], fixed: ints("int64", [-100, -100]) }]],
];

describe("op gradients match central finite differences", () => {
  it.each([...cases, ...composites])("%s", async (_name, build, inputs, opts) => {
    const { maxRelError, checked } = await gradCheck(build, inputs, { dtype: opts?.dtype ?? "float64", eps: opts?.eps ?? (opts?.dtype === "float32" ? 1e-2 : 1e-6) });
    expect(checked).toBeGreaterThan(0);
    expect(maxRelError).toBeLessThan(opts?.tol ?? 1e-4);
  });
});

describe("attention", () => {
  it("gives a query that sees no key uniform weights over all keys (HF's convention), not NaN", async () => {
    const q = o.input("q", "float32", [1, 2, 2, 2]);
    const k = o.input("k", "float32", [1, 1, 2, 2]);
    const v = o.input("v", "float32", [1, 1, 2, 2]);
    const allowed = o.input("allowed", "bool", [1, 1, 2, 2]);
    const program = await Program.compile({ out: nn.attention(q, k, v, new nn.AttentionMask(allowed), 1) });
    const { out } = await program.run({
      q: { data: Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8), dims: [1, 2, 2, 2] },
      k: { data: Float32Array.of(1, -1, 2, 0.5), dims: [1, 1, 2, 2] },
      v: { data: Float32Array.of(10, 20, 30, 40), dims: [1, 1, 2, 2] },
      allowed: { data: Uint8Array.of(0, 0, 1, 0), dims: [1, 1, 2, 2] }, // query 0 sees nothing, query 1 sees key 0
    });
    // Both query heads share the kv head: [mean of v, v[0]] for each.
    expect([...out.data]).toEqual([20, 30, 10, 20, 20, 30, 10, 20]);
  });
});

describe("gradient sums", () => {
  it("join the gradients of slices that tile a value with one concat, not padded copies", () => {
    const x = o.input("x", "float32", [2, 6]);
    const loss = o.reduceSum(o.mul(o.mul(o.slice(x, 1, 0, 2), o.slice(x, 1, 2, 4)), o.slice(x, 1, 4, 6)), [0, 1]);
    const [g] = grad(loss, [x]);
    expect(g.op).toBe("concat");
    expect(topoSort([g]).filter((v) => v.op === "pad")).toHaveLength(0);
  });
});
