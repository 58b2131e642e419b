// Bad graphs fail when they are built, naming the op and the shapes; bad gradient requests fail too.
import { describe, expect, it } from "vitest";
import * as o from "../src/graph/ops.js";
import { grad } from "../src/graph/autodiff.js";
import { type Value, topoSort } from "../src/graph/ir.js";
import { errorOf } from "./helpers/errors.js";

const f = (name: string, shape: (number | string)[]) => o.input(name, "float32", shape);

describe("build-time checks", () => {
  it("matmul with mismatched inner dims names the op and both shapes", () => {
    const e = errorOf(() => o.matmul(f("a", [2, 3]), f("b", [4, 5])));
    expect(e.code).toBe("shape");
    expect(e.message).toBe("op matmul: inner dims differ: [2, 3] @ [4, 5]");
  });
  it("add with shapes that do not broadcast", () => {
    const e = errorOf(() => o.add(f("a", [2, 3]), f("b", [4])));
    expect(e.message).toContain("op add");
    expect(e.message).toContain("[2, 3] and [4]");
  });
  it("n copies of a run-time dim concatenate to the size a reshape names, so the two broadcast", () => {
    const x = f("x", ["batch", 3, "seq", 2]);
    const stacked = o.reshape(x, [0, 1, -1, 2]); // [batch, 1, 3*seq, 2]
    const copies = o.concat([o.slice(x, 1, 0, 1), o.slice(x, 1, 0, 1), o.slice(x, 1, 0, 1)], 2);
    expect(copies.shape).toEqual(stacked.shape);
    expect(o.add(stacked, copies).shape).toEqual(["batch", 1, "3*seq", 2]);
    expect(o.concat([o.slice(x, 1, 0, 1), f("y", ["batch", 1, 4, 2])], 2).shape).toEqual(["batch", 1, "seq+4", 2]);
  });

  it("symbolic dims only broadcast against themselves or 1", () => {
    expect(o.add(f("a", ["batch", 3]), f("b", [1, 3])).shape).toEqual(["batch", 3]);
    expect(errorOf(() => o.add(f("a", ["batch", 3]), f("b", ["seq", 3]))).message).toContain("batch vs seq");
  });
  it("dtype mismatch", () => {
    const e = errorOf(() => o.add(f("a", [2]), o.input("b", "int64", [2])));
    expect(e.code).toBe("dtype");
    expect(e.message).toBe("op add: dtypes float32 and int64 differ");
  });
  it("reshape to a different size", () => {
    expect(errorOf(() => o.reshape(f("a", [2, 3]), [4, 2])).message).toBe("op reshape: cannot reshape [2, 3] to [4, 2]");
  });
  it("reshape infers symbolic dims", () => {
    expect(o.reshape(f("a", ["batch", "seq", 6]), [-1, 6]).shape).toEqual(["batch*seq", 6]);
    expect(o.reshape(f("a", ["batch", "seq", 6]), [0, 0, 2, 3]).shape).toEqual(["batch", "seq", 2, 3]);
  });
  it("gemm, layerNorm, concat and gather check their inputs", () => {
    expect(errorOf(() => o.gemm(f("a", [2, 3]), f("b", [2, 3]), { transB: false })).message).toContain("op gemm");
    expect(errorOf(() => o.layerNorm(f("x", [2, 4]), f("w", [3]), f("b", [4]), 1e-5)).message).toContain("op layerNorm");
    expect(errorOf(() => o.concat([f("a", [2, 3]), f("b", [3, 3])], 1)).message).toContain("op concat");
    expect(errorOf(() => o.gather(f("a", [2, 3]), f("i", [2]))).code).toBe("dtype");
  });
});

describe("gradient requests", () => {
  it("asking for a value the loss does not depend on is an error, not zeros", () => {
    const x = f("x", [3]);
    const unused = f("prompt", [3]);
    const loss = o.reduceSum(o.mul(x, x), [0]);
    const e = errorOf(() => grad(loss, [unused]));
    expect(e.code).toBe("grad");
    expect(e.message).toContain('input "prompt"');
  });
  it("the loss must be a single float", () => {
    expect(errorOf(() => grad(f("x", [3]), [f("y", [3])])).message).toContain("one element");
  });
  it("frozen inputs get no gradient work", () => {
    const w = f("w", [3, 3]);
    const x = f("x", [1, 3]);
    const loss = o.reduceSum(o.matmul(o.tanh(o.matmul(x, w)), w), [0, 1]);
    const count = (wrt: Value[]) => topoSort(grad(loss, wrt)).length;
    // Differentiating w as well adds the weight-gradient products; wrt x alone has none of them.
    expect(count([x])).toBeLessThan(count([x, w]));
  });
});
