// Property: on random small graphs of primitive ops, the analytic gradient matches finite differences.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import * as o from "../src/graph/ops.js";
import { type Value } from "../src/graph/ir.js";
import { gradCheck } from "./helpers/gradcheck.js";

type Step = { op: number; arg: number };
const unaryOps: ((x: Value) => Value)[] = [o.tanh, o.sigmoid, o.neg, o.sin, (x) => o.exp(o.mul(x, 0.3)), (x) => o.softmax(x, -1), (x) => o.mul(x, x)];
const binaryOps: ((a: Value, b: Value) => Value)[] = [o.add, o.sub, o.mul, (a, b) => o.div(a, o.add(o.mul(b, b), 1))];

/** Builds a chain over a pool of values: each step applies a unary op or combines two pool values. */
function buildGraph(steps: Step[]) {
  return ([a, b, c]: Value[]) => {
    const pool: Value[] = [a, b, o.reduceSum(c, [0], true)]; // shapes [2,3], [3], [1,3]: broadcasting everywhere
    for (const { op, arg } of steps) {
      const x = pool[arg % pool.length];
      const y = pool[(arg >> 3) % pool.length];
      pool.push(op < unaryOps.length ? unaryOps[op](x) : binaryOps[op - unaryOps.length](x, y));
    }
    // Combine everything so every input reaches the output.
    return pool.slice(1).reduce((acc, v) => o.add(acc, v), pool[0]);
  };
}

describe("random graphs", () => {
  it("gradients of random compositions match finite differences", async () => {
    const step = fc.record({ op: fc.integer({ min: 0, max: unaryOps.length + binaryOps.length - 1 }), arg: fc.integer({ min: 0, max: 63 }) });
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 6 }), async (steps) => {
        const { maxRelError } = await gradCheck(buildGraph(steps), [{ shape: [2, 3] }, { shape: [3] }, { shape: [2, 3] }], { maxElements: 6 });
        expect(maxRelError).toBeLessThan(1e-4);
      }),
      { numRuns: 15, seed: 42 },
    );
  });
});
