// Program.run: outputs written into the caller's buffers, and what a bad feed or buffer gets.
import { describe, expect, it } from "vitest";
import * as o from "../src/graph/ops.js";
import { Program } from "../src/runtime/session.js";
import { SoftpromptError } from "../src/util/errors.js";

const program = () => {
  const x = o.input("x", "float32", ["rows", 3]);
  return Program.compile({ doubled: o.mul(x, 2), plusOne: o.add(x, 1) });
};
const x = { data: Float32Array.of(1, 2, 3, 4, 5, 6), dims: [2, 3] };

async function runError(run: () => Promise<unknown>): Promise<SoftpromptError> {
  const err = await run().then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(SoftpromptError);
  return err as SoftpromptError;
}

describe("Program.run", () => {
  it("writes an output into the buffer given for it, and allocates the others", async () => {
    const p = await program();
    const buffer = new Float32Array(6).fill(-1);
    const out = await p.run({ x }, { doubled: { data: buffer, dims: [2, 3] } });
    expect(out.doubled.data).toBe(buffer);
    expect([...buffer]).toEqual([2, 4, 6, 8, 10, 12]);
    expect([...out.plusOne.data]).toEqual([2, 3, 4, 5, 6, 7]);
    // The same buffer again, for a second run: overwritten, not appended to.
    await p.run({ x: { data: Float32Array.of(0, 0, 0, 1, 1, 1), dims: [2, 3] } }, { doubled: { data: buffer, dims: [2, 3] } });
    expect([...buffer]).toEqual([0, 0, 0, 2, 2, 2]);
  });

  it("names an output it does not have, and a buffer of the wrong shape", async () => {
    const p = await program();
    expect((await runError(() => p.run({ x }, { tripled: { data: new Float32Array(6), dims: [2, 3] } }))).message).toMatch(/no output "tripled"/);
    expect((await runError(() => p.run({ x }, { doubled: { data: new Float32Array(4), dims: [2, 2] } }))).message).toMatch(/output "doubled" must be \[rows, 3\], got \[2, 2\]/);
    expect((await runError(() => p.run({}))).message).toMatch(/input "x" \[rows, 3\] was not fed/);
  });
});
