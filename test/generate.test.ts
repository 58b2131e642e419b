// Batched KV-cache generation against PEFT / transformers greedy generate on the golden models, and
// against the same generation recomputed without a cache, alone or in mixed batches.
import { describe, expect, it } from "vitest";
import * as o from "../src/graph/ops.js";
import type { CausalLM } from "../src/models/causal-lm.js";
import { attentionPattern, idsTensor } from "../src/models/inputs.js";
import { prependPrompt } from "../src/peft/prompt-tuning/model.js";
import { Program } from "../src/runtime/session.js";
import { loadTokenizer } from "../src/tokenizer/index.js";
import { SoftpromptError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";
import { type GenerateRequest, type SoftPrompt, generate } from "../src/infer/generate.js";
import { PromptCache } from "../src/infer/kv-cache.js";
import { lastLogits } from "../src/infer/step.js";
import { ARCHS, modelDir, readCase, rows, loadGoldenModel } from "./helpers/golden.js";
import { randomPrompt } from "./infer/prompts.js";

const EOS = 511;
const loadGolden = loadGoldenModel;

/** HF's output rows: the input, then the new tokens, padded with EOS after an EOS. */
function asOutputRow(input: number[], ids: number[], maxNew: number): number[] {
  return [...input, ...ids, ...Array<number>(maxNew - ids.length).fill(EOS)];
}

/**
 * Greedy continuation with no cache: every step runs the whole sequence (prompt embeddings prepended,
 * left padding, positions as `generate` documents) and takes the argmax of the last logits.
 */
async function greedyNoCache(lm: CausalLM, inputs: number[][], prompt: SoftPrompt | undefined, maxNew: number, peft: boolean): Promise<number[][]> {
  const d = lm.config.hiddenSize;
  const n = prompt === undefined ? 0 : prompt.embeddings.length / d;
  const table = o.input("prompt", "float32", [Math.max(n, 1), d]);
  const promptIndex = o.input("prompt_index", "int64", ["batch", n]);
  const ids = o.input("input_ids", "int64", ["batch", "seq"]);
  const total = n > 0 ? `${n}+seq` : "seq"; // virtual tokens, then the text
  const positions = o.input("position_ids", "int64", ["batch", total]);
  const allowed = o.input("allowed", "bool", ["batch", 1, total, total]);
  const embeds = n > 0 ? prependPrompt(table, promptIndex, lm.embed(ids)) : lm.embed(ids);
  const { hidden } = lm.forward({ inputsEmbeds: embeds, positions, allowed });
  const program = await Program.compile({ logits: lastLogits(lm, hidden) });
  const seqs = inputs.map((r) => [...r]);
  const width = Math.max(...inputs.map((r) => r.length));
  const pad = inputs.map((r) => width - r.length);
  for (let step = 0; step < maxNew; step++) {
    const T = width + step;
    const padded = seqs.map((s, b) => [...Array<number>(pad[b]).fill(EOS), ...s]);
    const mask = padded.map((_, b) => [...Array<number>(n).fill(1), ...Array.from({ length: T }, (_, t) => (t < pad[b] ? 0 : 1))]);
    const pos = new BigInt64Array(seqs.length * (n + T));
    padded.forEach((_, b) => {
      for (let t = 0; t < n + T; t++) {
        const real = t - n - pad[b]; // index among the row's real tokens
        pos[b * (n + T) + t] = BigInt(t < n ? t : peft ? t : real < 0 ? 0 : n + real);
      }
    });
    const out = await program.run({
      ...lm.weights.feeds(),
      prompt: { data: n > 0 ? prompt!.embeddings : new Float32Array(d), dims: [Math.max(n, 1), d] },
      prompt_index: { data: new BigInt64Array(seqs.length * n).map((_, i) => BigInt(i % n)), dims: [seqs.length, n] },
      input_ids: idsTensor(padded),
      position_ids: { data: pos, dims: [seqs.length, n + T] },
      allowed: attentionPattern(mask, n + T),
    });
    const logits = out.logits.data as Float32Array;
    const V = lm.config.vocabSize;
    seqs.forEach((s, b) => {
      const row = logits.subarray(b * V, (b + 1) * V);
      let best = 0;
      for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
      s.push(best);
    });
  }
  return seqs.map((s, b) => s.slice(inputs[b].length));
}

describe.each(ARCHS)("%s generate matches PEFT / transformers greedy generate", (arch) => {
  it("one row and a left-padded 2-row batch with the prompt-tuning adapter, and the base model", async () => {
    const lm = await loadGolden(arch);
    const tokenizer = await loadTokenizer(modelDir(arch));
    const golden = await readCase(arch, "generate_prompt_tuning");
    const table = golden.get("prompt_embeddings")!;
    const prompt: SoftPrompt = { id: `golden-${arch}`, embeddings: table.data as Float32Array, dims: table.shape };
    const maxNew = 8;

    const input = rows(golden.get("input_ids")!)[0];
    const [one] = await generate(lm, tokenizer, [{ inputIds: input, prompt, maxNewTokens: maxNew }]);
    expect(asOutputRow(input, one.ids, maxNew)).toEqual(rows(golden.get("output_ids")!)[0]);
    expect(one.finishReason).toBe(one.ids.includes(EOS) ? "eos" : "length");
    expect(one.text).toBe(tokenizer.decode(one.ids.filter((t) => t !== EOS)));

    // PEFT's batch: the padded row's positions count its padding ("peft" positions).
    const mask = rows(golden.get("batch2.attention_mask")!);
    const batchInputs = rows(golden.get("batch2.input_ids")!).map((r, b) => r.filter((_, t) => mask[b][t] === 1));
    const batch = await generate(
      lm,
      tokenizer,
      batchInputs.map((inputIds) => ({ inputIds, prompt, maxNewTokens: maxNew })),
      { positions: "peft" },
    );
    const want = rows(golden.get("batch2.output_ids")!);
    batch.forEach((g, b) => expect(asOutputRow(rows(golden.get("batch2.input_ids")!)[b], g.ids, maxNew)).toEqual(want[b]));

    const [base] = await generate(lm, tokenizer, [{ inputIds: input, maxNewTokens: maxNew }]);
    expect(asOutputRow(input, base.ids, maxNew)).toEqual(rows(golden.get("base_model.output_ids")!)[0]);
  });
});

describe("KV cache", () => {
  it.each(ARCHS)("%s: cached generation equals recomputing the whole sequence each step", async (arch) => {
    const lm = await loadGolden(arch);
    const d = lm.config.hiddenSize;
    const prompt = randomPrompt(`nocache-${arch}`, 3, d, 7);
    const inputs = [
      [297, 303, 328, 319, 82, 259],
      [47, 281, 434],
    ];
    for (const [p, mode] of [[prompt, "row"], [prompt, "peft"], [undefined, "row"]] as const) {
      const want = await greedyNoCache(lm, inputs, p, 6, mode === "peft");
      const got = await generate(lm, undefined, inputs.map((inputIds) => ({ inputIds, prompt: p, maxNewTokens: 6 })), { positions: mode });
      expect(got.map((g) => g.ids)).toEqual(want);
      expect(got.every((g) => g.finishReason === "length" && g.text === undefined)).toBe(true);
    }
  });
});

describe("mixed batches", () => {
  it.each(ARCHS)("%s: 8 requests over 4 prompts (and none) give the tokens of 8 separate calls", async (arch) => {
    const lm = await loadGolden(arch);
    const d = lm.config.hiddenSize;
    const prompts = [2, 5, 3, 4].map((n, k) => randomPrompt(`mixed-${arch}-${k}`, n, d, 100 + k));
    const rng = new Rng(5);
    const requests: GenerateRequest[] = Array.from({ length: 8 }, (_, i) => ({
      inputIds: Array.from({ length: 1 + ((i * 3) % 7) }, () => rng.int(511)),
      prompt: i % 3 === 2 ? undefined : prompts[i % 4],
      maxNewTokens: 3 + (i % 4),
      ...(i % 2 === 1 ? { temperature: 0.9, topK: 50, seed: 40 + i } : {}),
      ...(i === 4 ? { repetitionPenalty: 1.3 } : {}),
    }));
    const cache = new PromptCache(lm);
    const together = await generate(lm, undefined, requests, { promptCache: cache });
    expect(cache.size).toBe(4); // each distinct prompt computed once
    const alone = [];
    for (const r of requests) alone.push((await generate(lm, undefined, [r], { promptCache: cache }))[0]);
    expect(together).toEqual(alone);
    together.forEach((g, i) => expect(g.ids.length).toBe(requests[i].maxNewTokens));
  });

  it("a prompt id whose embeddings changed is recomputed, not served stale", async () => {
    const lm = await loadGolden("llama");
    const d = lm.config.hiddenSize;
    const cache = new PromptCache(lm);
    const a = randomPrompt("same-id", 4, d, 1);
    const b = { ...randomPrompt("same-id", 4, d, 2) };
    const req = (prompt: SoftPrompt) => ({ inputIds: [5, 6, 7], prompt, maxNewTokens: 6 });
    const [first] = await generate(lm, undefined, [req(a)], { promptCache: cache });
    const [second] = await generate(lm, undefined, [req(b)], { promptCache: cache });
    const [fresh] = await generate(lm, undefined, [req(b)], { promptCache: new PromptCache(lm) });
    expect(second.ids).toEqual(fresh.ids);
    expect(first.ids).not.toEqual(second.ids);
  });
});

describe("stopping", () => {
  it("EOS ends a row (kept as its last id), a stop string cuts the text, and maxNewTokens the rest", async () => {
    const lm = await loadGolden("llama");
    const tokenizer = await loadTokenizer(modelDir("llama"));
    const input = [297, 303, 328, 319, 82];
    const [free] = await generate(lm, tokenizer, [{ inputIds: input, maxNewTokens: 8 }]);
    // Declare the 3rd greedy token an EOS id: the row must end there.
    const [eos] = await generate(lm, tokenizer, [{ inputIds: input, maxNewTokens: 8 }], { eosTokenIds: [free.ids[2]] });
    expect(eos.ids).toEqual(free.ids.slice(0, 3));
    expect(eos.finishReason).toBe("eos");
    expect(eos.text).toBe(tokenizer.decode(free.ids.slice(0, 2)));
    // A stop string made of the 4th token's text: text cut before it.
    const stopText = tokenizer.decode([free.ids[3]]);
    const before = tokenizer.decode(free.ids.slice(0, 3));
    const [stopped] = await generate(lm, tokenizer, [{ inputIds: input, maxNewTokens: 8, stop: [stopText] }]);
    expect(stopped.finishReason).toBe("stop");
    expect(stopped.text).toBe(tokenizer.decode(stopped.ids).slice(0, tokenizer.decode(stopped.ids).indexOf(stopText)));
    expect(before.includes(stopText) || stopped.text === before).toBe(true);
    // Text input: encoded with the tokenizer, same ids as the encoded input.
    const text = "The model reads";
    const [fromText] = await generate(lm, tokenizer, [{ text, maxNewTokens: 4 }]);
    const [fromIds] = await generate(lm, tokenizer, [{ inputIds: tokenizer.encode(text), maxNewTokens: 4 }]);
    expect(fromText).toEqual(fromIds);
  });
});

describe("bad requests", () => {
  it("fail with code usage and say what is wrong", async () => {
    const lm = await loadGolden("gpt2");
    const d = lm.config.hiddenSize;
    const usage = async (request: Partial<GenerateRequest>, pattern: RegExp, tokenizer = undefined) => {
      const err = await generate(lm, tokenizer, [{ maxNewTokens: 4, ...request } as GenerateRequest]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SoftpromptError);
      expect((err as SoftpromptError).code).toBe("usage");
      expect((err as SoftpromptError).message).toMatch(pattern);
    };
    await usage({ inputIds: [] }, /input is empty/);
    await usage({ inputIds: [1], prompt: { id: "p", embeddings: new Float32Array(5 * 32), dims: [5, 32] } }, /hidden size is 64/);
    await usage({ inputIds: [1], prompt: { id: "p", embeddings: new Float32Array(100) } }, /multiple of the model's hidden size 64/);
    await usage({ inputIds: [1], maxNewTokens: 0 }, /maxNewTokens must be an integer >= 1/);
    await usage({ inputIds: [1], maxNewTokens: 2.5 }, /maxNewTokens/);
    await usage({ inputIds: [1, 512] }, /outside the vocabulary/);
    await usage({ text: "hello" }, /needs a tokenizer/);
    await usage({}, /either inputIds or text/);
    await usage({ inputIds: [1], stop: ["x"] }, /need a tokenizer/);
    await usage({ inputIds: [1], temperature: -1 }, /temperature/);
    await usage({ inputIds: [1], maxNewTokens: 200 }, /128 positions/);
    await usage({ inputIds: [1], prompt: { id: "", embeddings: new Float32Array(d) } }, /non-empty id/);
    expect(await generate(lm, undefined, [])).toEqual([]);
  });
});
