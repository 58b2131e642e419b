// Weight-only quantisation (--quantize int8|int4): the packing round trip, ORT's MatMulNBits against the
// dequantised weight, quantised tiny models against float32 (log-probabilities, greedy tokens), and the
// refusals: training through a quantised weight, a LoRA adapter on a quantised model, a bad mode, --quantize on train;
// and a server started with quantize answering as the quantised library does.
import { describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as o from "../src/graph/ops.js";
import { grad } from "../src/graph/autodiff.js";
import { Program } from "../src/runtime/session.js";
import { loadModel } from "../src/models/index.js";
import { generateText } from "../src/workflows.js";
import { startServer } from "../src/serve/index.js";
import { BLOCK_SIZE, QuantizedWeights, dequantizeMatrix, parseQuantizeMode, quantizeMatrix, quantizeModel } from "../src/quantize/index.js";
import { scoreCompletions } from "../src/infer/score.js";
import { generate } from "../src/infer/generate.js";
import type { CausalLM } from "../src/models/causal-lm.js";
import { Rng } from "../src/util/rng.js";
import { adapterDir, modelDir } from "./helpers/golden.js";

const TINY_TASKS = fileURLToPath(new URL("../examples/models/tiny-tasks/", import.meta.url));
const BIN = fileURLToPath(new URL("../bin/softprompt.js", import.meta.url));

function randomMatrix(size: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: size }, () => rng.normal() * 0.05);
}

describe("quantizeMatrix → dequantizeMatrix", () => {
  // K = 40 is not a multiple of the block size: the last block is zero-padded, which stays exact.
  for (const bits of [8, 4] as const) {
    for (const layout of ["out_in", "in_out"] as const) {
      it(`int${bits}, ${layout}: every value within half a step of its block`, () => {
        const [n, k] = [6, 40];
        const w = randomMatrix(n * k, bits);
        w[3] = 0;
        const q = quantizeMatrix(w, n, k, layout, bits);
        const back = dequantizeMatrix(q);
        const kBlocks = Math.ceil(k / BLOCK_SIZE);
        for (let r = 0; r < n; r++) {
          for (let c = 0; c < k; c++) {
            const original = layout === "out_in" ? w[r * k + c] : w[c * n + r];
            const step = q.scales[r * kBlocks + Math.floor(c / BLOCK_SIZE)];
            expect(Math.abs(back[r * k + c] - original)).toBeLessThanOrEqual(step / 2 + 1e-7);
          }
        }
        if (layout === "out_in") expect(back[3]).toBe(0);
        // A step is the block's range over 2^bits − 1 codes: int4 steps are 17× int8's.
        expect(Math.max(...q.scales)).toBeLessThan((bits === 8 ? 0.5 : 8) / 255);
      });
    }
  }
});

describe("MatMulNBits", () => {
  it("computes x · dequant(W)ᵀ (int8 activations: within 1% of the output's range)", async () => {
    const [m, n, k] = [3, 8, 72];
    const x = randomMatrix(m * k, 1).map((v) => v * 20);
    for (const bits of [8, 4] as const) {
      const q = quantizeMatrix(randomMatrix(n * k, 2), n, k, "out_in", bits);
      const kBlocks = Math.ceil(k / BLOCK_SIZE);
      const y = o.matMulNBits(
        o.input("x", "float32", [m, k]),
        o.constant(q.packed, [n, kBlocks, (BLOCK_SIZE * bits) / 8], "uint8"),
        o.constant(q.scales, [n * kBlocks]),
        o.constant(q.zeroPoints, [q.zeroPoints.length], "uint8"),
        { bits, blockSize: BLOCK_SIZE },
      );
      const out = (await (await Program.compile({ y })).run({ x: { data: x, dims: [m, k] } })).y.data as Float32Array;
      const w = dequantizeMatrix(q);
      const want = Array.from({ length: m * n }, (_, i) => {
        let s = 0;
        for (let j = 0; j < k; j++) s += x[Math.floor(i / n) * k + j] * w[(i % n) * k + j];
        return s;
      });
      const range = Math.max(...want.map(Math.abs));
      want.forEach((v, i) => expect(Math.abs(out[i] - v)).toBeLessThan(0.01 * range));
    }
  });

  it("checks its shapes at build time", () => {
    const x = o.input("x", "float32", [2, 64]);
    const build = () => o.matMulNBits(x, o.input("p", "uint8", [8, 2, 16]), o.input("s", "float32", [8]), o.input("z", "uint8", [8]), { bits: 4, blockSize: 32 });
    expect(build).toThrow("op matMulNBits: K=64, N=8, 4 bits in blocks of 32 need scales [16], got [8]");
  });

  it("has no gradient: training through a quantised weight is refused", () => {
    const x = o.input("x", "float32", [2, 32]);
    const y = o.matMulNBits(x, o.input("p", "uint8", [4, 1, 32]), o.input("s", "float32", [4]), o.input("z", "uint8", [4]), { bits: 8, blockSize: 32 });
    expect(() => grad(o.reduceSum(y, [0, 1]), [x])).toThrow("op matMulNBits: quantised weights are for inference only");
  });
});

/** Each completion token's log-probability. */
async function logProbs(lm: CausalLM, pairs: { inputIds: number[]; completionIds: number[] }[]) {
  return (await scoreCompletions(lm, pairs)).flatMap((s) => s.tokenLogProbs);
}

describe("a quantised model", () => {
  it("gives the golden tiny Llama's log-probabilities within 0.15 (int8) and 1.5 (int4); float32 is untouched", async () => {
    const { lm } = await loadModel(modelDir("llama"));
    expect(lm.weights).not.toBeInstanceOf(QuantizedWeights);
    const rng = new Rng(5);
    const pairs = Array.from({ length: 4 }, () => ({ inputIds: [1, 2, 3].map(() => rng.int(512)), completionIds: [1, 2, 3, 4].map(() => rng.int(512)) }));
    const base = await logProbs(lm, pairs);
    for (const [mode, tolerance] of [["int8", 0.15], ["int4", 1.5]] as const) {
      const q = quantizeModel(lm, mode);
      const diffs = (await logProbs(q, pairs)).map((v, i) => Math.abs(v - base[i]));
      expect(Math.max(...diffs)).toBeLessThan(tolerance);
      expect(Math.max(...diffs)).toBeGreaterThan(0); // it did run through the quantised weights
    }
    expect(await logProbs(lm, pairs)).toEqual(base);
  });

  it("keeps the example model's greedy tokens: ≥ 90% agree with float32 at int8, ≥ 70% at int4", async () => {
    const { lm, tokenizer } = await loadModel(TINY_TASKS);
    const inputs = ["copy", "reverse", "sort", "increment"].flatMap((task) =>
      readFileSync(fileURLToPath(new URL(`../examples/data/${task}.valid.jsonl`, import.meta.url)), "utf8").trim().split("\n").slice(0, 6).map((l) => tokenizer.encode(JSON.parse(l).prompt as string)),
    );
    const tokens = async (m: CausalLM) => (await generate(m, undefined, inputs.map((inputIds) => ({ inputIds, maxNewTokens: 8 })), { eosTokenIds: [] })).map((g) => g.ids);
    const base = await tokens(lm);
    for (const [mode, floor] of [["int8", 0.9], ["int4", 0.7]] as const) {
      const got = await tokens(quantizeModel(lm, mode));
      const same = got.flat().filter((t, i) => t === base.flat()[i]).length;
      expect(same / base.flat().length).toBeGreaterThanOrEqual(floor);
    }
  });

  it("holds its projections in a quarter (int8) or an eighth (int4) of their float32 bytes, plus scales", async () => {
    const { lm } = await loadModel(modelDir("gpt2"));
    const projectionBytes = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"].reduce((s, m) => s + 2 * lm.weights.tensor(`h.0.${m}.weight`).data.byteLength, 0);
    for (const [mode, share] of [["int8", 1 / 4], ["int4", 1 / 8]] as const) {
      const { quantized } = (quantizeModel(lm, mode).weights as QuantizedWeights).bytes();
      // Per block of 32: one float32 scale (1/32 of the block's float32 bytes) and a zero point.
      expect(quantized / projectionBytes).toBeCloseTo(share + 1 / 32 + (mode === "int8" ? 1 / 128 : 1 / 256), 5);
    }
  });
});

describe("bad input", () => {
  it("names the flag and the modes for an unknown mode", () => {
    expect(() => parseQuantizeMode("int3")).toThrow('field "--quantize": --quantize must be one of int8, int4, got "int3"');
  });

  it("refuses a LoRA adapter with --quantize (generate), naming the flag", async () => {
    await expect(generateText({ model: modelDir("gpt2"), adapter: adapterDir("gpt2", "lora"), inputs: ["hi"], maxNewTokens: 1, quantize: "int8", onWarning: () => {} })).rejects.toThrow(
      'tensor "h.0.attn.c_attn.weight", field "--quantize": h.0.attn.c_attn.weight is quantised (--quantize int8); quantised weights are for inference only: LoRA adapters',
    );
  });

  it("refuses whatever asks a quantised model for a projection's float32 weight (LoRA hooks, merging, training)", async () => {
    const { lm } = await loadModel(modelDir("llama"), { quantize: "int4" });
    expect(() => lm.weights.get("model.layers.0.self_attn.q_proj.weight")).toThrow(
      'tensor "model.layers.0.self_attn.q_proj.weight", field "--quantize": model.layers.0.self_attn.q_proj.weight is quantised (--quantize int4); quantised weights are for inference only',
    );
    expect(lm.weights.get("model.embed_tokens.weight").dtype).toBe("float32");
  });

  it("refuses --quantize on train, saying why, and an unknown mode on generate", async () => {
    const cli = (args: string[]) =>
      new Promise<{ code: number; stderr: string }>((resolve) =>
        execFile(process.execPath, [BIN, ...args], { encoding: "utf8" }, (err, _out, stderr) => resolve({ code: (err as { code?: number } | null)?.code ?? 0, stderr })),
      );
    const [train, generate] = await Promise.all([
      cli(["train", "--model", modelDir("gpt2"), "--data", "x.jsonl", "--output", "out", "--quantize", "int8"]),
      cli(["generate", "--model", modelDir("gpt2"), "--input", "hi", "--quantize", "int3"]),
    ]);
    expect(train.code).toBe(2);
    expect(train.stderr).toContain("option '--quantize <mode>' argument 'int8' is invalid. quantised weights are for inference only (generate, eval, serve): training needs the float32 model");
    expect(generate.code).toBe(2);
    expect(generate.stderr).toContain("option '--quantize <mode>' argument 'int3' is invalid. Allowed choices are int8, int4.");
  });
});

describe("serving a quantised model", () => {
  it("answers a completion with the quantised library's own greedy tokens", async () => {
    const registry = mkdtempSync(join(tmpdir(), "quantize-serve-"));
    const server = await startServer({ model: TINY_TASKS, adapters: registry, quantize: "int4", rescanMs: 0, log: () => {} });
    try {
      const res = await fetch(`${server.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "tiny-tasks", prompt: "3 1 4 = ", max_tokens: 4, temperature: 0 }) });
      expect(res.status).toBe(200);
      const text = ((await res.json()) as { choices: { text: string }[] }).choices[0].text;
      const [expected] = await generateText({ model: TINY_TASKS, inputs: ["3 1 4 = "], maxNewTokens: 4, quantize: "int4" });
      expect(text).toBe(expected.text);
    } finally {
      await server.close();
      rmSync(registry, { recursive: true, force: true });
    }
  });
});
