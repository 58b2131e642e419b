// Each new loss term's gradient against central finite differences (as every op's in graph-ops.test.ts),
// and its values against the formulas written out.
import { describe, expect, it } from "vitest";
import * as o from "../../src/graph/ops.js";
import { Program } from "../../src/runtime/session.js";
import { dpoLoss, logSigmoid, rowSums, tokenLogp, unlikelihood } from "../../src/objective/terms.js";
import { verbalizerLoss } from "../../src/objective/verbalizer.js";
import { gradCheck } from "../helpers/gradcheck.js";

const TOL = 1e-6;
const targets = { shape: [4], fixed: { dtype: "int64" as const, data: [2, 0, 4, 1] } };

describe("loss terms: gradients against finite differences", () => {
  it("token log-probabilities", async () => {
    const { maxRelError } = await gradCheck(([logits, t]) => tokenLogp(logits, t), [{ shape: [4, 5] }, targets]);
    expect(maxRelError).toBeLessThan(TOL);
  });

  it("unlikelihood −log(1 − p), including a token the model is almost sure of", async () => {
    const logits = [0.1, 0.2, 0.3, 0.4, 0.5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1, 2, 0.5, 0, 1];
    const { maxRelError } = await gradCheck(([l, t]) => unlikelihood(tokenLogp(l, t)), [{ shape: [4, 5], data: logits }, targets]);
    expect(maxRelError).toBeLessThan(TOL);
  });

  it("row sums", async () => {
    const rows = { shape: [2, 4], fixed: { dtype: "float64" as const, data: [1, 1, 0, 0, 0, 0, 1, 1] } };
    const { maxRelError } = await gradCheck(([v, r]) => rowSums(v, r), [{ shape: [4] }, rows]);
    expect(maxRelError).toBeLessThan(TOL);
  });

  it("log σ at large margins of both signs", async () => {
    const { maxRelError } = await gradCheck(([x]) => logSigmoid(x), [{ shape: [6], data: [-60, -3, -0.1, 0, 2, 60] }]);
    expect(maxRelError).toBeLessThan(TOL);
  });

  it("the DPO loss", async () => {
    const { maxRelError } = await gradCheck(([c, r, m]) => dpoLoss(c, r, m, 0.5), [{ shape: [3] }, { shape: [3] }, { shape: [3] }]);
    expect(maxRelError).toBeLessThan(TOL);
  });
});

describe("loss terms: values", () => {
  it("match the formulas", async () => {
    const logits = o.input("logits", "float32", [2, 3]);
    const t = o.input("t", "int64", [2]);
    const c = o.input("c", "float32", [2]);
    const lp = tokenLogp(logits, t);
    const program = await Program.compile({ lp, ul: unlikelihood(lp), dpo: dpoLoss(c, o.scalar(-1), o.scalar(0.5), 2) });
    const out = await program.run({
      logits: { data: Float32Array.from([0, Math.log(3), 0, 20, 0, 0]), dims: [2, 3] },
      t: { data: BigInt64Array.from([1n, 0n]), dims: [2] },
      c: { data: Float32Array.from([-1, 3]), dims: [2] },
    });
    const lpv = Array.from(out.lp.data as Float32Array);
    expect(lpv[0]).toBeCloseTo(Math.log(3 / 5), 5);
    expect((out.ul.data as Float32Array)[0]).toBeCloseTo(-Math.log(2 / 5), 5);
    expect((out.ul.data as Float32Array)[1]).toBeCloseTo(-Math.log(1e-5), 3); // p ≈ 1: clamped
    const dpo = Array.from(out.dpo.data as Float32Array);
    expect(dpo[0]).toBeCloseTo(Math.log(1 + Math.exp(2 * 0.5)), 5); // margin (−1 − −1) − 0.5 = −0.5
    expect(dpo[1]).toBeCloseTo(Math.log(1 + Math.exp(-2 * 3.5)), 5);
  });
});

describe("verbalizer cross-entropy: gradient against finite differences", () => {
  it("over two rows, three labels with one or two words", async () => {
    // 8 token positions; candidate k (of 2 rows × 4 words) averages some of them.
    const K = 8;
    const M = 8;
    const rows = Array.from({ length: K * M }, (_, i) => (Math.floor(i / M) === i % M || (i % M === (Math.floor(i / M) + 1) % M && Math.floor(i / M) % 2 === 0) ? 0.5 : 0));
    const groups = [[0, 1], [1, 3], [3, 4]] as const;
    const { maxRelError } = await gradCheck(
      ([logp, cands, targets]) => verbalizerLoss(logp, cands, groups, targets),
      [{ shape: [M] }, { shape: [2, K / 2, M], fixed: { dtype: "float64", data: rows } }, { shape: [2], fixed: { dtype: "int64", data: [1, 2] } }],
    );
    expect(maxRelError).toBeLessThan(TOL);
  });
});
