// The step-level engine on the golden models: rows join at different steps, leave when done, are
// cancelled, mix soft prompts and none; each row's tokens must be those of generating it alone.
import { describe, expect, it, vi } from "vitest";
import type { CausalLM } from "../../src/models/causal-lm.js";
import { type Generation, type RowId, type RowRequest, type RowToken, GenerationEngine } from "../../src/infer/engine.js";
import { type GenerateRequest, generate } from "../../src/infer/generate.js";
import { PromptCache } from "../../src/infer/kv-cache.js";
import { scoreCompletions } from "../../src/infer/score.js";
import { decodeProgram } from "../../src/infer/step.js";
import { type Tokenizer, loadTokenizer } from "../../src/tokenizer/index.js";
import { SoftpromptError } from "../../src/util/errors.js";
import { Rng } from "../../src/util/rng.js";
import { ARCHS, type Arch, loadGoldenModel, modelDir } from "../helpers/golden.js";
import { randomPrompt } from "./prompts.js";

/** A request that joins the engine before step `at` (0: the first). */
interface Plan {
  at: number;
  request: GenerateRequest;
  /** Hand the engine the computed prompt state instead of its promise. */
  awaited?: boolean;
}

interface Trace {
  ids: RowId[];
  /** Per plan, the tokens it was handed step by step, with the step number. */
  streamed: { step: number; token: number }[][];
  done: (Generation | undefined)[];
}

async function asRow(cache: PromptCache, plan: Plan): Promise<RowRequest> {
  const { prompt, inputIds, ...rest } = plan.request;
  const state = prompt === undefined ? undefined : cache.get(prompt);
  return { ...rest, inputIds: inputIds!, prompt: plan.awaited ? await state : state };
}

/** Run the plans through one engine, cancelling plan i before step s for each [s, i] in `cancels`. */
async function runPlans(engine: GenerationEngine, cache: PromptCache, plans: Plan[], cancels: [number, number][] = []): Promise<Trace> {
  const trace: Trace = { ids: [], streamed: plans.map(() => []), done: plans.map(() => undefined) };
  const planOf = new Map<RowId, number>();
  const lastJoin = Math.max(...plans.map((p) => p.at));
  for (let step = 0; step <= lastJoin || engine.size > 0; step++) {
    for (const [i, plan] of plans.entries()) {
      if (plan.at !== step) continue;
      trace.ids[i] = engine.add(await asRow(cache, plan), `plans[${i}]`);
      planOf.set(trace.ids[i], i);
    }
    for (const [s, i] of cancels) if (s === step) expect(engine.cancel(trace.ids[i])).toBe(true);
    for (const t of await engine.step()) {
      const i = planOf.get(t.row)!;
      trace.streamed[i].push({ step, token: t.token });
      if (t.done !== undefined) trace.done[i] = t.done;
    }
  }
  return trace;
}

async function alone(lm: CausalLM, tokenizer: Tokenizer | undefined, cache: PromptCache, request: GenerateRequest): Promise<Generation> {
  return (await generate(lm, tokenizer, [request], { promptCache: cache }))[0];
}

function inputOf(rng: Rng, length: number): number[] {
  return Array.from({ length }, () => rng.int(511));
}

describe.each(ARCHS)("%s engine", (arch: Arch) => {
  it("rows joining at different steps, with different prompts or none, greedy or seeded, get their solo tokens", async () => {
    const lm = await loadGoldenModel(arch);
    const tokenizer = await loadTokenizer(modelDir(arch));
    const d = lm.config.hiddenSize;
    const [a, b, c] = [3, 5, 2].map((n, k) => randomPrompt(`engine-${arch}-${k}`, n, d, 200 + k));
    const rng = new Rng(17);
    const plans: Plan[] = [
      { at: 0, request: { inputIds: inputOf(rng, 6), prompt: a, maxNewTokens: 8 } },
      { at: 0, request: { inputIds: inputOf(rng, 2), maxNewTokens: 6, temperature: 0.8, topK: 40, seed: 3 } },
      { at: 2, request: { inputIds: inputOf(rng, 9), prompt: b, maxNewTokens: 5, temperature: 1.1, topP: 0.9, seed: 9 }, awaited: true },
      { at: 2, request: { inputIds: inputOf(rng, 1), prompt: a, maxNewTokens: 7, repetitionPenalty: 1.3 } },
      { at: 3, request: { inputIds: inputOf(rng, 4), maxNewTokens: 1 } },
      { at: 5, request: { inputIds: inputOf(rng, 12), prompt: c, maxNewTokens: 4 } },
      { at: 5, request: { inputIds: inputOf(rng, 3), maxNewTokens: 3, temperature: 0.7, seed: 12 } },
    ];
    const cache = new PromptCache(lm);
    const trace = await runPlans(new GenerationEngine(lm, { tokenizer }), cache, plans);
    for (const [i, plan] of plans.entries()) {
      const solo = await alone(lm, tokenizer, cache, plan.request);
      expect(trace.done[i], `plan ${i}`).toEqual(solo);
      // One token per step from the step it joined, the last one carrying the result.
      expect(trace.streamed[i]).toEqual(solo.ids.map((token, k) => ({ step: plan.at + k, token })));
    }
  });
});

describe("engine rows", () => {
  it("rows joining a running batch (written into its room, or a new block when they do not fit) get their solo tokens", async () => {
    const lm = await loadGoldenModel("qwen2");
    const cache = new PromptCache(lm);
    const prompt = randomPrompt("engine-room", 3, lm.config.hiddenSize, 5);
    const rng = new Rng(23);
    const plans: Plan[] = [
      // Three rows: a block with room for four rows and 16 columns.
      { at: 0, request: { inputIds: inputOf(rng, 8), prompt, maxNewTokens: 11 } },
      { at: 0, request: { inputIds: inputOf(rng, 6), maxNewTokens: 3 } },
      { at: 0, request: { inputIds: inputOf(rng, 9), maxNewTokens: 12, temperature: 0.9, seed: 4 } },
      // Shorter than the running width: into the room after the others.
      { at: 2, request: { inputIds: inputOf(rng, 2), prompt, maxNewTokens: 6 } },
      // Plan 1 has left (compacted out) and two join: one into its room, then more rows than the room: a new block.
      { at: 4, request: { inputIds: inputOf(rng, 4), maxNewTokens: 4 } },
      { at: 5, request: { inputIds: inputOf(rng, 3), maxNewTokens: 5 } },
      { at: 5, request: { inputIds: inputOf(rng, 1), prompt, maxNewTokens: 3 } },
      // Longer than the running width: a new block.
      { at: 7, request: { inputIds: inputOf(rng, 14), maxNewTokens: 3 } },
    ];
    const trace = await runPlans(new GenerationEngine(lm), cache, plans);
    for (const [i, plan] of plans.entries()) {
      const solo = await alone(lm, undefined, cache, plan.request);
      expect(trace.done[i], `plan ${i}`).toEqual(solo);
    }
  });

  it("a cancelled row stops at once, running or queued, and the others are unaffected", async () => {
    const lm = await loadGoldenModel("llama");
    const tokenizer = await loadTokenizer(modelDir("llama"));
    const cache = new PromptCache(lm);
    const prompt = randomPrompt("engine-cancel", 4, lm.config.hiddenSize, 3);
    const plans: Plan[] = [
      { at: 0, request: { inputIds: [5, 6, 7], prompt, maxNewTokens: 7 } },
      { at: 0, request: { inputIds: [9, 10], maxNewTokens: 7, temperature: 0.9, seed: 1 } },
      { at: 0, request: { inputIds: [11], prompt, maxNewTokens: 7 } },
      { at: 3, request: { inputIds: [12, 13], maxNewTokens: 5 } },
    ];
    // Plan 1 is cancelled while running (before step 2), plan 3 while queued (added at 3, cancelled before that step).
    const engine = new GenerationEngine(lm, { tokenizer });
    const trace = await runPlans(engine, cache, plans, [
      [2, 1],
      [3, 3],
    ]);
    expect(trace.streamed[1].map((s) => s.step)).toEqual([0, 1]);
    expect(trace.done[1]).toBeUndefined();
    expect(trace.streamed[3]).toEqual([]);
    for (const i of [0, 2]) expect(trace.done[i]).toEqual(await alone(lm, tokenizer, cache, plans[i].request));
    expect(engine.size).toBe(0);
    expect(engine.cancel(trace.ids[0])).toBe(false); // finished rows are gone
    expect(engine.cancel(12345)).toBe(false);
  });

  it("a row cancelled while its step's forward runs gets no token from it", async () => {
    const lm = await loadGoldenModel("gpt2");
    const engine = new GenerationEngine(lm);
    const [x, y] = [engine.add({ inputIds: [1, 2, 3], maxNewTokens: 4 }), engine.add({ inputIds: [4], maxNewTokens: 4 })];
    await engine.step();
    // Cancel from inside the decode forward, after the step has taken its rows (a cache of a few columns holds 16).
    const decode = await decodeProgram(lm, 16);
    const run = decode.run.bind(decode);
    let cancelled = false;
    const spy = vi.spyOn(decode, "run").mockImplementationOnce((feeds) => {
      cancelled = engine.cancel(x);
      return run(feeds);
    });
    const tokens: RowToken[] = await engine.step().finally(() => spy.mockRestore());
    expect(cancelled).toBe(true);
    expect(tokens.map((t) => t.row)).toEqual([y]);
    const rest: RowToken[] = [];
    while (engine.size > 0) rest.push(...(await engine.step()));
    expect(rest.every((t) => t.row === y)).toBe(true);
    expect(rest.at(-1)!.done!.ids).toEqual((await generate(lm, undefined, [{ inputIds: [4], maxNewTokens: 4 }]))[0].ids);
  });

  it("a row cancelled while its prompt is being computed never runs", async () => {
    const lm = await loadGoldenModel("llama");
    const state = await new PromptCache(lm).get(randomPrompt("engine-pending", 2, lm.config.hiddenSize, 4));
    let resolve!: (s: typeof state) => void;
    const engine = new GenerationEngine(lm);
    const waiting = engine.add({ inputIds: [3], maxNewTokens: 3, prompt: new Promise((r) => (resolve = r)) });
    const other = engine.add({ inputIds: [4, 5], maxNewTokens: 2 });
    const step = engine.step();
    await new Promise((r) => setImmediate(r)); // the step now waits for the prompt
    expect(engine.cancel(waiting)).toBe(true);
    resolve(state);
    expect((await step).map((t) => t.row)).toEqual([other]);
    expect((await engine.step()).map((t) => t.row)).toEqual([other]);
    expect(engine.size).toBe(0);
  });

  it("maxNewTokens 1 gives one token at the row's first step and the row is gone", async () => {
    const lm = await loadGoldenModel("qwen2");
    const engine = new GenerationEngine(lm);
    const long = engine.add({ inputIds: [3, 4, 5], maxNewTokens: 3 });
    await engine.step();
    const short = engine.add({ inputIds: [8, 9], maxNewTokens: 1 });
    const tokens = await engine.step();
    expect(tokens.map((t) => t.row)).toEqual([long, short]);
    const [solo] = await generate(lm, undefined, [{ inputIds: [8, 9], maxNewTokens: 1 }]);
    expect(tokens[1].done).toEqual(solo);
    expect(solo.finishReason).toBe("length");
    expect(engine.size).toBe(1);
  });

  it("an EOS id ends a row there, kept as its last id", async () => {
    const lm = await loadGoldenModel("llama");
    const [free] = await generate(lm, undefined, [{ inputIds: [40, 41, 42], maxNewTokens: 6 }]);
    const engine = new GenerationEngine(lm, { eosTokenIds: [free.ids[2]] });
    engine.add({ inputIds: [40, 41, 42], maxNewTokens: 6 });
    const seen: RowToken[] = [];
    while (engine.size > 0) seen.push(...(await engine.step()));
    const firstEos = free.ids.indexOf(free.ids[2]);
    expect(seen.at(-1)!.done).toEqual({ ids: free.ids.slice(0, firstEos + 1), finishReason: "eos" });
  });

  it("a stop string that spans two tokens ends the row at the second, the text cut before it", async () => {
    const lm = await loadGoldenModel("llama");
    const tokenizer = await loadTokenizer(modelDir("llama"));
    const input = [297, 303, 328, 319, 82];
    const [free] = await generate(lm, tokenizer, [{ inputIds: input, maxNewTokens: 16 }], { eosTokenIds: [] });
    // The last character of token k's text and the first of token k+1's, found nowhere earlier.
    const textTo = (k: number) => tokenizer.decode(free.ids.slice(0, k + 1));
    let k = 0;
    let stop = "";
    for (; k + 1 < free.ids.length; k++) {
      const [before, after] = [textTo(k), textTo(k + 1)];
      stop = before.slice(-1) + after.slice(before.length, before.length + 1);
      const clean = after.startsWith(before) && after.length > before.length && before.length > 0 && !stop.includes("\uFFFD");
      if (clean && !before.includes(stop) && tokenizer.decode([free.ids[k]]).length > 0) break;
    }
    expect(k + 1).toBeLessThan(free.ids.length);
    const engine = new GenerationEngine(lm, { tokenizer, eosTokenIds: [] });
    const row = engine.add({ inputIds: input, maxNewTokens: 16, stop: [stop] });
    const other = engine.add({ inputIds: [7, 8], maxNewTokens: k + 6 });
    const done = new Map<RowId, Generation>();
    while (engine.size > 0) for (const t of await engine.step()) if (t.done) done.set(t.row, t.done);
    expect(done.get(row)).toEqual({ ids: free.ids.slice(0, k + 2), text: textTo(k).slice(0, -1), finishReason: "stop" });
    expect(done.get(other)).toEqual((await generate(lm, tokenizer, [{ inputIds: [7, 8], maxNewTokens: k + 6 }], { eosTokenIds: [] }))[0]);
  });
});

describe("engine log-probabilities", () => {
  it("each token's log-probability and the most likely alternatives are the model's, whatever the sampler drew", async () => {
    const lm = await loadGoldenModel("llama");
    const input = [40, 41, 42, 43];
    const engine = new GenerationEngine(lm);
    const greedyRow = engine.add({ inputIds: input, maxNewTokens: 5, logprobs: 3 });
    const sampledRow = engine.add({ inputIds: [9, 8, 7], maxNewTokens: 5, temperature: 1.5, seed: 3, logprobs: 0 });
    const plainRow = engine.add({ inputIds: [5, 6], maxNewTokens: 2 });
    const seen = new Map<RowId, RowToken[]>();
    while (engine.size > 0) for (const t of await engine.step()) seen.set(t.row, [...(seen.get(t.row) ?? []), t]);
    const greedyTokens = seen.get(greedyRow)!;
    for (const { token, logprob } of greedyTokens) {
      expect(logprob!.token).toBe(token);
      expect(logprob!.top).toHaveLength(3);
      expect(logprob!.top[0]).toEqual({ token, logprob: logprob!.logprob }); // greedy drew the most likely
      expect(logprob!.top[1].logprob).toBeLessThanOrEqual(logprob!.top[0].logprob);
      expect(logprob!.top[2].logprob).toBeLessThanOrEqual(logprob!.top[1].logprob);
    }
    expect(seen.get(sampledRow)!.every((t) => t.logprob!.top.length === 0 && t.logprob!.logprob <= 0)).toBe(true);
    expect(seen.get(plainRow)!.every((t) => t.logprob === undefined)).toBe(true);
    // The same numbers from a separate computation: scoring the drawn tokens after the input, in one forward.
    for (const [row, inputIds] of [[greedyRow, input], [sampledRow, [9, 8, 7]]] as const) {
      const tokens = seen.get(row)!;
      const [score] = await scoreCompletions(lm, [{ inputIds, completionIds: tokens.map((t) => t.token) }]);
      tokens.forEach((t, i) => expect(t.logprob!.logprob).toBeCloseTo(score.tokenLogProbs[i], 4));
    }
  });
});

describe("engine errors", () => {
  const usage = (fn: () => unknown, message: RegExp, field?: string) => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SoftpromptError);
    expect((err as SoftpromptError).code).toBe("usage");
    expect((err as SoftpromptError).message).toMatch(message);
    if (field !== undefined) expect((err as SoftpromptError).place.field).toBe(field);
  };

  it("bad requests are refused when added, naming the field", async () => {
    const lm = await loadGoldenModel("gpt2");
    const engine = new GenerationEngine(lm);
    usage(() => engine.add({ inputIds: [], maxNewTokens: 2 }), /input is empty/, "request.inputIds");
    usage(() => engine.add({ inputIds: [600], maxNewTokens: 2 }, "rows[3]"), /outside the vocabulary/, "rows[3].inputIds");
    usage(() => engine.add({ inputIds: [1], maxNewTokens: 0 }), /maxNewTokens must be an integer >= 1/, "request.maxNewTokens");
    usage(() => engine.add({ inputIds: [1], maxNewTokens: 200 }), /128 positions/, "request.maxNewTokens");
    usage(() => engine.add({ inputIds: [1], maxNewTokens: 2, topP: 0 }), /topP must be in \(0, 1\]/, "request.topP");
    usage(() => engine.add({ inputIds: [1], maxNewTokens: 2, stop: ["x"] }), /need a tokenizer/, "request.stop");
    usage(() => engine.add({ inputIds: [1], maxNewTokens: 2, logprobs: 21 }), /logprobs must be an integer from 0 to 20/, "request.logprobs");
    usage(() => new GenerationEngine(lm, { padTokenId: -1 }), /outside the vocabulary/, "padTokenId");
    expect(engine.size).toBe(0);
    expect(await engine.step()).toEqual([]);
  });

  it("a step while another runs is refused", async () => {
    const lm = await loadGoldenModel("gpt2");
    const engine = new GenerationEngine(lm);
    engine.add({ inputIds: [1, 2], maxNewTokens: 2 });
    const first = engine.step();
    await expect(engine.step()).rejects.toThrow(/while a step is running/);
    await first;
  });

  it("a forward that fails rejects its step and drops the rows in it; rows added later run", async () => {
    const lm = await loadGoldenModel("qwen2");
    const engine = new GenerationEngine(lm);
    engine.add({ inputIds: [1, 2], maxNewTokens: 3 });
    await engine.step();
    engine.add({ inputIds: [3], maxNewTokens: 3 });
    const decode = await decodeProgram(lm, 16); // a cache of a few columns holds 16
    const spy = vi.spyOn(decode, "run").mockRejectedValueOnce(new Error("out of memory"));
    await expect(engine.step().finally(() => spy.mockRestore())).rejects.toThrow(/out of memory/);
    expect(engine.size).toBe(0);
    engine.add({ inputIds: [4, 5], maxNewTokens: 2 });
    const done: Generation[] = [];
    while (engine.size > 0) for (const t of await engine.step()) if (t.done) done.push(t.done);
    expect(done).toEqual(await generate(lm, undefined, [{ inputIds: [4, 5], maxNewTokens: 2 }]));
  });

  it("a prompt that fails, or that does not fit, rejects its step; the other joining rows go on", async () => {
    const lm = await loadGoldenModel("gpt2");
    const llama = await loadGoldenModel("llama");
    const engine = new GenerationEngine(lm);
    const good = engine.add({ inputIds: [5, 6], maxNewTokens: 3 });
    const broken = engine.add({ inputIds: [5], maxNewTokens: 3, prompt: Promise.reject(new Error("prompt computation failed")) });
    await expect(engine.step()).rejects.toThrow(/prompt computation failed/);
    expect(engine.cancel(broken)).toBe(false);
    const foreign = await new PromptCache(llama).get(randomPrompt("llama-prompt", 2, llama.config.hiddenSize, 1));
    engine.add({ inputIds: [5], maxNewTokens: 3, prompt: foreign }, "rows[1]");
    await expect(engine.step()).rejects.toMatchObject({ code: "usage", place: { field: "rows[1].prompt" } });
    const done: Generation[] = [];
    while (engine.size > 0) for (const t of await engine.step()) if (t.done) done.push(t.done);
    expect(done).toEqual(await generate(lm, undefined, [{ inputIds: [5, 6], maxNewTokens: 3 }]));
    expect(engine.cancel(good)).toBe(false);
  });
});
