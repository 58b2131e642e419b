// `npm run bench -- quantize`: weight-only quantisation (--quantize int8|int4) against float32.
// Speed: greedy decode tokens/s on the GPT-2-small shape (random weights), float32, int8 and int4 side by side in one
// process. Memory: each mode in a process of its own (quantize-child.ts): its weights' bytes, RSS after decoding, peak RSS.
// Quality: on the golden tiny models and examples/models/tiny-tasks, how far each completion token's log-probability,
// the mean loss and greedy tokens move from float32.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import type { CausalLM } from "../src/models/causal-lm.js";
import { loadModel } from "../src/models/index.js";
import { generate } from "../src/infer/generate.js";
import { scoreCompletions } from "../src/infer/score.js";
import { type QuantizeMode, quantizeModel } from "../src/quantize/index.js";
import { Rng } from "../src/util/rng.js";
import { buildModel } from "../src/models/build.js";
import { median, randomWeights, shapeConfig } from "./common.js";

const MODES: (QuantizeMode | "float32")[] = ["float32", "int8", "int4"];
const GOLDEN = ["gpt2", "llama", "qwen2"].map((arch) => fileURLToPath(new URL(`../test/fixtures/golden/${arch}/model/`, import.meta.url)));
const TINY_TASKS = fileURLToPath(new URL("../examples/models/tiny-tasks/", import.meta.url));
const TASK_DATA = ["copy", "reverse", "sort", "increment"].map((t) => fileURLToPath(new URL(`../examples/data/${t}.valid.jsonl`, import.meta.url)));

/** Greedy continuations of `inputs`, `newTokens` each (no EOS stop, so every row runs its full length). */
export async function greedyTokens(lm: CausalLM, inputs: number[][], newTokens: number): Promise<number[][]> {
  const out = await generate(lm, undefined, inputs.map((inputIds) => ({ inputIds, maxNewTokens: newTokens })), { eosTokenIds: [] });
  return out.map((g) => g.ids);
}

/** The share of positions where two sets of generated rows hold the same token. */
export function agreement(a: number[][], b: number[][]): number {
  let same = 0;
  let total = 0;
  a.forEach((row, i) => row.forEach((t, j) => ((total += 1), (same += t === b[i][j] ? 1 : 0))));
  return same / total;
}

/** Each completion token's log-probability after its context, flattened over the requests. */
export async function completionLogProbs(lm: CausalLM, pairs: { inputIds: number[]; completionIds: number[] }[]): Promise<number[]> {
  return (await scoreCompletions(lm, pairs)).flatMap((s) => s.tokenLogProbs);
}

/** Compare int8 and int4 with float32 on one model: log-probs (max abs diff), mean loss, greedy agreement. */
export async function compareModes(lm: CausalLM, pairs: { inputIds: number[]; completionIds: number[] }[], newTokens: number) {
  const prompts = pairs.map((p) => p.inputIds);
  const base = await completionLogProbs(lm, pairs);
  const baseTokens = await greedyTokens(lm, prompts, newTokens);
  const loss = (lp: number[]) => -lp.reduce((s, v) => s + v, 0) / lp.length;
  const result: Record<string, object> = { float32: { loss: loss(base) } };
  for (const mode of ["int8", "int4"] as const) {
    const q = quantizeModel(lm, mode);
    const lp = await completionLogProbs(q, pairs);
    result[mode] = {
      loss: loss(lp),
      loss_change: loss(lp) - loss(base),
      max_logprob_diff: Math.max(...lp.map((v, i) => Math.abs(v - base[i]))),
      greedy_agreement: agreement(baseTokens, await greedyTokens(q, prompts, newTokens)),
    };
  }
  return result;
}

function randomPairs(vocab: number, rows: number, seed: number) {
  const rng = new Rng(seed);
  const ids = (n: number) => Array.from({ length: n }, () => rng.int(vocab));
  return Array.from({ length: rows }, () => ({ inputIds: ids(8), completionIds: ids(8) }));
}

async function quality() {
  const out: Record<string, object> = {};
  for (const dir of GOLDEN) {
    const { lm } = await loadModel(dir);
    out[dir.split("/").at(-3)!] = await compareModes(lm, randomPairs(lm.config.vocabSize, 8, 5), 16);
  }
  const { lm, tokenizer } = await loadModel(TINY_TASKS);
  const pairs = TASK_DATA.flatMap((file) =>
    readFileSync(file, "utf8").trim().split("\n").slice(0, 16).map((line) => {
      const { prompt, completion } = JSON.parse(line) as { prompt: string; completion: string };
      return { inputIds: tokenizer.encode(prompt), completionIds: tokenizer.encode(completion, { addSpecialTokens: false }) };
    }),
  );
  out["tiny-tasks"] = await compareModes(lm, pairs, 12);
  return out;
}

/** Decode tokens/s: `rows` rows, a 32-token prefill, then `steps` greedy steps (the prefill's time taken off). */
async function decodeSpeed(lm: CausalLM, rows: number, steps: number): Promise<number> {
  const rng = new Rng(9);
  const inputs = Array.from({ length: rows }, () => Array.from({ length: 32 }, () => rng.int(lm.config.vocabSize)));
  const t0 = performance.now();
  await greedyTokens(lm, inputs, 1);
  const prefill = performance.now() - t0;
  const t1 = performance.now();
  await greedyTokens(lm, inputs, steps + 1);
  return (rows * steps) / ((performance.now() - t1 - prefill) / 1000);
}

/** Tokens/s per mode and batch size: the three models side by side, in turn, three rounds; the median of each. */
async function speed() {
  const config = shapeConfig("gpt2-small");
  const float = buildModel(config, randomWeights(config));
  const models = { float32: float, int8: quantizeModel(float, "int8"), int4: quantizeModel(float, "int4") };
  for (const lm of Object.values(models)) await greedyTokens(lm, [[1, 2]], 2); // compile prefill and step
  const runs: Record<string, number[]> = {};
  for (let round = 0; round < 3; round++) {
    for (const [mode, lm] of Object.entries(models)) {
      for (const rows of [1, 8]) (runs[`${mode} batch ${rows}`] ??= []).push(await decodeSpeed(lm, rows, 16));
    }
  }
  return Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
}

export async function benchQuantize() {
  const load_average_before = loadavg();
  const tokens_per_s = await speed();
  // Memory: each mode in a process of its own, so that the numbers do not mix.
  const child = fileURLToPath(new URL("./quantize-child.ts", import.meta.url));
  const memory = Object.fromEntries(
    MODES.map((mode) => [mode, JSON.parse(execFileSync(process.execPath, ["--expose-gc", "--import", "tsx", child, mode], { encoding: "utf8" })) as object]),
  );
  return { shape: "gpt2-small", decode_tokens_per_s: tokens_per_s, memory, quality: await quality(), load_average_before, load_average: loadavg() };
}
