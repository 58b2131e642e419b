// ORT's profiler through Program (enableProfiling, endProfiling) and the profile bench's summary of it, on a tiny
// graph: which ops ran, how often, with what shapes. No timing is asserted.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as o from "../src/graph/ops.js";
import { Program } from "../src/runtime/session.js";
import { type ProfileEvent, summarizeProfile } from "../bench/profile.js";

describe("profiling a program", () => {
  it("writes ORT's profile under the prefix, and the summary counts each op, node and product shape", async () => {
    const dir = mkdtempSync(join(tmpdir(), "profile-test-"));
    try {
      const x = o.input("x", "float32", [4, 8]);
      const y = o.softmax(o.gemm(o.matmul(x, o.input("v", "float32", [8, 8]), { transB: true }), o.input("w", "float32", [8, 3])));
      const program = await Program.compile({ y }, { enableProfiling: true, profileFilePrefix: join(dir, "tiny") });
      const feeds = { x: { data: new Float32Array(32).fill(1), dims: [4, 8] }, v: { data: new Float32Array(64), dims: [8, 8] }, w: { data: new Float32Array(24), dims: [8, 3] } };
      for (let i = 0; i < 3; i++) await program.run(feeds);
      const file = await program.endProfiling();
      expect(file.startsWith(join(dir, "tiny_"))).toBe(true);

      const summary = summarizeProfile(JSON.parse(readFileSync(file, "utf8")) as ProfileEvent[], { skipRuns: 1 });
      expect(summary.runs).toBe(2);
      expect(summary.byOpType.map((g) => [g.op, g.calls]).sort()).toEqual([["FusedMatMul", 2], ["Gemm", 2], ["Softmax", 2]]);
      expect(summary.byOpType.reduce((s, g) => s + g.share, 0)).toBeCloseTo(1, 6);
      expect(summary.topNodes).toHaveLength(3);
      expect(summary.products.map(({ op, inputs, output, calls }) => ({ op, inputs, output, calls })).sort((a, b) => a.op.localeCompare(b.op))).toEqual([
        { op: "FusedMatMul", inputs: [[4, 8], [8, 8]], output: [4, 8], calls: 2 },
        { op: "Gemm", inputs: [[4, 8], [8, 3]], output: [4, 3], calls: 2 },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses endProfiling on a program compiled without it", async () => {
    const program = await Program.compile({ y: o.neg(o.input("x", "float32", [2])) });
    await expect(program.endProfiling()).rejects.toThrow('field "enableProfiling": this program was compiled without enableProfiling');
  });
});
