// The decode program reads a held KV cache (KV.held) beside the new token: its logits and new
// key/value column must be the step program's, which joins the same cache to the new keys in the graph.
import { describe, expect, it } from "vitest";
import * as nn from "../../src/graph/nn.js";
import * as o from "../../src/graph/ops.js";
import type { Value } from "../../src/graph/ir.js";
import { decodeGraph, decodeProgram, pastName, presentName, stepProgram } from "../../src/infer/step.js";
import { buildModel } from "../../src/models/build.js";
import type { CausalLM } from "../../src/models/causal-lm.js";
import { tensorSpec } from "../../src/models/checkpoint.js";
import { parseModelConfig } from "../../src/models/config.js";
import { attentionPattern } from "../../src/models/inputs.js";
import type { Tensor } from "../../src/runtime/session.js";
import { Rng } from "../../src/util/rng.js";
import { errorOf } from "../helpers/errors.js";
import { ARCHS, loadGoldenModel } from "../helpers/golden.js";

/**
 * A one-layer GPT-2 wide enough that its MLP weights (512×2048, 4 MB) take the decode product as W·xᵀ
 * (nn.linear), with random weights: the golden models' weights are all below that size.
 */
function wideGpt2(): CausalLM {
  const config = parseModelConfig({ model_type: "gpt2", n_embd: 512, n_layer: 1, n_head: 8, n_positions: 32, vocab_size: 40 }, "wide gpt2 (test)");
  const rng = new Rng(11);
  return buildModel(config, new Map(tensorSpec(config).map((s) => [s.name, Float32Array.from({ length: s.shape[0] * (s.shape[1] ?? 1) }, () => rng.normal() * 0.05)])));
}

const MODELS: [string, () => Promise<CausalLM>][] = [...ARCHS.map((arch): [string, () => Promise<CausalLM>] => [arch, () => loadGoldenModel(arch)]), ["wide gpt2", async () => wideGpt2()]];

describe("decode over a held cache", () => {
  it("the wide model's MLP products take the W·xᵀ form in the decode program, and only there", () => {
    const lm = wideGpt2();
    const products = (outputs: Record<string, Value>) => {
      const seen = new Set<Value>();
      const found: string[] = [];
      const visit = (v: Value) => {
        if (seen.has(v)) return;
        seen.add(v);
        if (v.op === "matmul" && v.inputs[0] === lm.weights.get("h.0.mlp.c_fc.weight")) found.push("W·xᵀ");
        v.inputs.forEach(visit);
      };
      Object.values(outputs).forEach(visit);
      return found;
    };
    expect(products(decodeGraph(lm, 8))).toEqual(["W·xᵀ"]);
    const { hidden } = lm.forward({ inputsEmbeds: o.input("e", "float32", ["b", "t", 512]), positions: o.input("p", "int64", ["b", "t"]), allowed: o.input("a", "bool", ["b", 1, "t", "t"]) });
    expect(products({ hidden })).toEqual([]);
  });

  it.each(MODELS)("%s: logits and the new column equal the step program's over the same cache", async (_name, load) => {
    const lm = await load();
    const { numLayers, numKvHeads: H, headDim: hd, vocabSize } = lm.config;
    const [B, width, capacity] = [2, 5, 8];
    const rng = new Rng(3);
    // Row 0 sees every cached column, row 1 only the last three (left padding).
    const keyMask = [Array<number>(width).fill(1), [0, 0, 1, 1, 1]];
    const exact: Record<string, Tensor> = {};
    const held: Record<string, Tensor> = {};
    for (let i = 0; i < numLayers; i++) {
      for (const kind of ["key", "value"] as const) {
        const data = Float32Array.from({ length: B * H * width * hd }, () => rng.normal() * 0.5);
        exact[pastName(i, kind)] = { data, dims: [B, H, width, hd] };
        const padded = new Float32Array(B * H * capacity * hd).fill(7); // columns past the width are never attended
        for (let bh = 0; bh < B * H; bh++) padded.set(data.subarray(bh * width * hd, (bh + 1) * width * hd), bh * capacity * hd);
        held[pastName(i, kind)] = { data: padded, dims: [B, H, capacity, hd] };
      }
    }
    const token = {
      input_ids: { data: BigInt64Array.of(3n, 9n), dims: [B, 1] },
      position_ids: { data: BigInt64Array.of(5n, 3n), dims: [B, 1] },
    };
    const joined = await (await stepProgram(lm, "step")).run({
      ...lm.weights.feeds(),
      ...exact,
      ...token,
      allowed: attentionPattern(keyMask.map((m) => [...m, 1]), 1),
    });
    const allowed = new Uint8Array(B * (capacity + 1));
    keyMask.forEach((m, b) => {
      allowed.set(m, b * (capacity + 1));
      allowed[b * (capacity + 1) + capacity] = 1;
    });
    const decoded = await (await decodeProgram(lm, capacity)).run({ ...lm.weights.feeds(), ...held, ...token, allowed: { data: allowed, dims: [B, 1, 1, capacity + 1] } });

    expect(decoded.logits.dims).toEqual([B, vocabSize]);
    const logits = decoded.logits.data as Float32Array;
    (joined.logits.data as Float32Array).forEach((x, j) => expect(logits[j]).toBeCloseTo(x, 4));
    for (let i = 0; i < numLayers; i++) {
      for (const kind of ["key", "value"] as const) {
        const present = decoded[presentName(i, kind)];
        expect(present.dims).toEqual([B, H, 1, hd]); // the new column alone
        const all = joined[presentName(i, kind)].data as Float32Array;
        const fresh = present.data as Float32Array;
        for (let bh = 0; bh < B * H; bh++) {
          const last = all.subarray((bh * (width + 1) + width) * hd, (bh * (width + 1) + width + 1) * hd);
          fresh.subarray(bh * hd, (bh + 1) * hd).forEach((x, d) => expect(x).toBeCloseTo(last[d], 5));
        }
      }
    }
  });

  it("a held past needs a fixed length", () => {
    const q = o.input("q", "float32", ["b", 2, 1, 4]);
    const kv = o.input("k", "float32", ["b", 2, 1, 4]);
    const past = { key: o.input("pk", "float32", ["b", 2, "past", 4]), value: o.input("pv", "float32", ["b", 2, "past", 4]) };
    const mask = new nn.AttentionMask(o.input("allowed", "bool", ["b", 1, 1, "past+1"]));
    const err = errorOf(() => nn.attention(q, kv, kv, mask, 0.5, undefined, past));
    expect(err.place).toEqual({ op: "attention" });
    expect(err.message).toContain("a held past needs a fixed length, got [b, 2, past, 4]");
  });
});
