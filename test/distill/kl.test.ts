// The distillation loss: its value is KL(teacher ‖ student) (exact over a whole vocabulary, the KL of the
// coarsened top-k + rest distributions otherwise), the hidden-state term is the mean squared difference per
// position, and their gradients match finite differences like every loss.
import { describe, expect, it } from "vitest";
import * as o from "../../src/graph/ops.js";
import { Program } from "../../src/runtime/session.js";
import { hiddenSquaredError, klSum, klWithLm } from "../../src/distill/kl.js";
import { topIndices } from "../../src/distill/teacher.js";
import { gradCheck, randn } from "../helpers/gradcheck.js";

const M = 3;
const V = 6;

/** A teacher distribution per row (log-probabilities), from random logits. */
function teacherLogp(): number[][] {
  const logits = randn(M * V).map((x) => 2 * x);
  return Array.from({ length: M }, (_, m) => {
    const row = logits.slice(m * V, (m + 1) * V);
    const lse = Math.log(row.reduce((s, x) => s + Math.exp(x), 0));
    return row.map((x) => x - lse);
  });
}

/** The fixed inputs of `klSum` for keeping the teacher's top k of each row (and the rest's mass when k < V). */
function teacherInputs(p: number[][], k: number) {
  const top = p.map((row) => topIndices(row, k));
  const rest = p.map((row, m) => Math.log(row.reduce((s, x, v) => (top[m].includes(v) ? s : s + Math.exp(x)), 0)));
  return {
    indices: { shape: [M, k], fixed: { dtype: "int64" as const, data: top.flat() } },
    logp: { shape: [M, k], fixed: { dtype: "float64" as const, data: top.flatMap((ids, m) => ids.map((v) => p[m][v])) } },
    mask: { shape: [M, V], fixed: { dtype: "bool" as const, data: top.flatMap((ids) => Array.from({ length: V }, (_, v) => (ids.includes(v) ? 0 : 1))) } },
    restLogp: { shape: [M], fixed: { dtype: "float64" as const, data: rest } },
  };
}

/** KL(p ‖ q) of each row on the host, in float64, over the outcomes `groups` (token sets). */
function hostKl(p: number[][], logits: number[], groups: (m: number) => number[][]): number {
  let total = 0;
  for (let m = 0; m < M; m++) {
    const row = logits.slice(m * V, (m + 1) * V);
    const lse = Math.log(row.reduce((s, x) => s + Math.exp(x), 0));
    for (const g of groups(m)) {
      const pg = g.reduce((s, v) => s + Math.exp(p[m][v]), 0);
      const qg = g.reduce((s, v) => s + Math.exp(row[v] - lse), 0);
      total += pg * Math.log(pg / qg);
    }
  }
  return total;
}

async function klValue(logits: number[], t: ReturnType<typeof teacherInputs>, k: number, withRest: boolean): Promise<number> {
  const x = o.input("logits", "float64", [M, V]);
  const idx = o.input("idx", "int64", [M, k]);
  const lp = o.input("lp", "float64", [M, k]);
  const mask = o.input("mask", "bool", [M, V]);
  const rl = o.input("rl", "float64", [M]);
  const program = await Program.compile({ kl: klSum(x, { topIndices: idx, topLogp: lp, rest: withRest ? { mask, logp: rl } : undefined }) });
  const feeds = {
    logits: { data: Float64Array.from(logits), dims: [M, V] },
    idx: { data: BigInt64Array.from(t.indices.fixed.data, BigInt), dims: [M, k] },
    lp: { data: Float64Array.from(t.logp.fixed.data), dims: [M, k] },
    ...(withRest ? { mask: { data: Uint8Array.from(t.mask.fixed.data), dims: [M, V] }, rl: { data: Float64Array.from(t.restLogp.fixed.data), dims: [M] } } : {}),
  };
  return Number((await program.run(feeds)).kl.data[0]);
}

describe("klSum", () => {
  it("is the KL of the whole distributions when k covers the vocabulary, and 0 for the teacher itself", async () => {
    const p = teacherLogp();
    const t = teacherInputs(p, V);
    const logits = randn(M * V);
    const all = () => [...Array(V).keys()].map((v) => [v]);
    expect(await klValue(logits, t, V, false)).toBeCloseTo(hostKl(p, logits, all), 10);
    expect(await klValue(p.flat(), t, V, false)).toBeCloseTo(0, 10);
  });

  it("with the top k and the rest's mass, is the KL over those k + 1 outcomes, below the full KL", async () => {
    const p = teacherLogp();
    const k = 2;
    const t = teacherInputs(p, k);
    const logits = randn(M * V);
    const top = (m: number) => topIndices(p[m], k);
    const coarse = (m: number) => [...top(m).map((v) => [v]), [...Array(V).keys()].filter((v) => !top(m).includes(v))];
    const value = await klValue(logits, t, k, true);
    expect(value).toBeCloseTo(hostKl(p, logits, coarse), 10);
    expect(value).toBeLessThan(hostKl(p, logits, () => [...Array(V).keys()].map((v) => [v])));
  });

  it("has the gradient of finite differences, with and without the rest", async () => {
    const p = teacherLogp();
    const full = teacherInputs(p, V);
    const whole = await gradCheck(([logits, idx, lp]) => klSum(logits, { topIndices: idx, topLogp: lp }), [{ shape: [M, V] }, full.indices, full.logp]);
    expect(whole.checked).toBe(M * V);
    expect(whole.maxRelError).toBeLessThan(1e-6);
    const t = teacherInputs(p, 2);
    const coarse = await gradCheck(
      ([logits, idx, lp, mask, rl]) => klSum(logits, { topIndices: idx, topLogp: lp, rest: { mask, logp: rl } }),
      [{ shape: [M, V] }, t.indices, t.logp, t.mask, t.restLogp],
    );
    expect(coarse.checked).toBe(M * V);
    expect(coarse.maxRelError).toBeLessThan(1e-6);
  });
});

describe("klWithLm", () => {
  // Rows 0 and 2 are teacher positions, row 1 a completion token (its teacher inputs a filler).
  const isTeacher = { shape: [M], fixed: { dtype: "float64" as const, data: [1, 0, 1] } };
  const lmWeight = { shape: [M], fixed: { dtype: "float64" as const, data: [0, 0.5, 0] } };
  const targets = { shape: [M], fixed: { dtype: "int64" as const, data: [2, 4, 0] } };

  it("is the teacher positions' KL plus the weighted cross-entropy of the completion tokens", async () => {
    const p = teacherLogp();
    const t = teacherInputs(p, 2);
    const logits = randn(M * V);
    const top = (m: number) => topIndices(p[m], 2);
    const coarse = (m: number) => [...top(m).map((v) => [v]), [...Array(V).keys()].filter((v) => !top(m).includes(v))];
    const x = o.input("logits", "float64", [M, V]);
    const ins = [t.indices, t.logp, t.mask, t.restLogp, targets, isTeacher, lmWeight].map((s, i) => o.input(`i${i}`, s.fixed.dtype, s.shape));
    const program = await Program.compile({ loss: klWithLm(x, { topIndices: ins[0], topLogp: ins[1], rest: { mask: ins[2], logp: ins[3] } }, ins[4], ins[5], ins[6]) });
    const typed = (s: { fixed: { dtype: string; data: number[] } }) => (s.fixed.dtype === "int64" ? BigInt64Array.from(s.fixed.data, BigInt) : s.fixed.dtype === "bool" ? Uint8Array.from(s.fixed.data) : Float64Array.from(s.fixed.data));
    const feeds = Object.fromEntries([t.indices, t.logp, t.mask, t.restLogp, targets, isTeacher, lmWeight].map((s, i) => [`i${i}`, { data: typed(s), dims: s.shape }]));
    const value = Number((await program.run({ logits: { data: Float64Array.from(logits), dims: [M, V] }, ...feeds })).loss.data[0]);
    const row = logits.slice(V, 2 * V);
    const ce = Math.log(row.reduce((s, z) => s + Math.exp(z), 0)) - row[4];
    const kl = hostKl(p, logits, (m) => (m === 1 ? [] : coarse(m)));
    expect(value).toBeCloseTo(kl + 0.5 * ce, 10);
  });

  it("has the gradient of finite differences", async () => {
    const t = teacherInputs(teacherLogp(), 2);
    const check = await gradCheck(
      ([logits, idx, lp, mask, rl, y, teach, w]) => klWithLm(logits, { topIndices: idx, topLogp: lp, rest: { mask, logp: rl } }, y, teach, w),
      [{ shape: [M, V] }, t.indices, t.logp, t.mask, t.restLogp, targets, isTeacher, lmWeight],
    );
    expect(check.checked).toBe(M * V);
    expect(check.maxRelError).toBeLessThan(1e-6);
  });
});

describe("hiddenSquaredError", () => {
  const D = 4;

  it("is the mean over the hidden size of the squared difference, per position", async () => {
    const [student, teacher] = [randn(M * D), randn(M * D)];
    const program = await Program.compile({ e: hiddenSquaredError(o.input("s", "float64", [M, D]), o.input("t", "float64", [M, D])) });
    const out = (await program.run({ s: { data: Float64Array.from(student), dims: [M, D] }, t: { data: Float64Array.from(teacher), dims: [M, D] } })).e;
    expect(out.dims).toEqual([M]);
    for (let m = 0; m < M; m++) {
      const want = Array.from({ length: D }, (_, j) => (student[m * D + j] - teacher[m * D + j]) ** 2).reduce((a, b) => a + b) / D;
      expect(Number(out.data[m])).toBeCloseTo(want, 12);
    }
  });

  it("has the gradient of finite differences", async () => {
    const check = await gradCheck(([s, t]) => o.reduceSum(hiddenSquaredError(s, t), [0]), [{ shape: [M, D] }, { shape: [M, D], fixed: { dtype: "float64", data: randn(M * D) } }]);
    expect(check.checked).toBe(M * D);
    expect(check.maxRelError).toBeLessThan(1e-6);
  });
});

describe("topIndices", () => {
  it("gives the k largest, largest first, ties to the lower index", () => {
    expect(topIndices([0.1, 0.5, 0.3, 0.5, -1], 3)).toEqual([1, 3, 2]);
    expect(topIndices([3, 1, 2], 3)).toEqual([0, 2, 1]);
    expect(topIndices([1, 2], 5)).toEqual([1, 0]);
  });
});
