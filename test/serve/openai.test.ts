// The server driven by the official `openai` npm client, unchanged, on loopback: every answer must
// equal the same request run alone through the library (`generate`, `scoreChoices`) with the same
// seed, whichever requests shared its batch; bad input gets OpenAI's error shape and the right status,
// and the server keeps serving.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI, { APIError } from "openai";
import type { CompletionCreateParamsNonStreaming } from "openai/resources/completions";
import { type RunningServer, addAdapter, removeAdapter, startServer } from "../../src/serve/index.js";
import { type Model, loadModel } from "../../src/models/index.js";
import { generate, type GenerateRequest } from "../../src/infer/generate.js";
import { scoreChoices, scoreCompletions } from "../../src/infer/score.js";
import { type LoadedAdapter, loadSoftPrompt } from "../../src/workflows.js";
import { eventually, foreignAdapter, tinyWithChatTemplate, trainAdapters } from "./helpers.js";

const KEY = "test-key";
const work = mkdtempSync(join(tmpdir(), "softprompt-serve-"));
const root = join(work, "registry");
const modelDir = join(work, "tiny-tasks");
let server: RunningServer;
let client: OpenAI;
let model: Model;
let runs: Record<string, string>;
const adapters: Record<string, LoadedAdapter> = {};
const logged: string[] = [];

beforeAll(async () => {
  runs = await trainAdapters(join(work, "runs"));
  tinyWithChatTemplate(modelDir);
  for (const name of ["reverse", "sort"]) await addAdapter({ root, name, source: runs[name] });
  model = await loadModel(modelDir);
  for (const name of ["reverse", "sort"]) adapters[name] = await loadSoftPrompt(join(root, name, "1"), model, modelDir);
  server = await startServer({ model: modelDir, adapters: root, baseName: "tiny-tasks", apiKeys: [KEY], maxTokens: 40, maxBodyBytes: 16 * 1024, rescanMs: 200, log: (l, m) => logged.push(`${l}: ${m}`) });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 30_000 });
});
afterAll(async () => {
  await server?.close();
  rmSync(work, { recursive: true, force: true });
});

/** What the library gives for one request alone. */
async function solo(request: GenerateRequest & { adapter?: string }): Promise<string> {
  const { adapter, ...rest } = request;
  const [g] = await generate(model.lm, model.tokenizer, [{ ...rest, prompt: adapter === undefined ? undefined : adapters[adapter].prompt }]);
  return g.text ?? "";
}

const chatIds = (content: string) => model.tokenizer.encode(model.tokenizer.applyChatTemplate([{ role: "user", content }], { addGenerationPrompt: true }), { addSpecialTokens: false });

/** A seed with which the bare model continues "1 " for 40 tokens without an EOS (a long row). */
async function seedRunningToLimit(): Promise<number> {
  const runsToLimit = async (seed: number) => (await generate(model.lm, model.tokenizer, [{ text: "1 ", maxNewTokens: 40, temperature: 1.5, seed }]))[0].finishReason === "length";
  let seed = 0;
  while (seed < 50 && !(await runsToLimit(seed))) seed++;
  expect(seed).toBeLessThan(50);
  return seed;
}

async function apiError(p: Promise<unknown>): Promise<APIError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(APIError);
  return err as APIError;
}

async function post(path: string, body: string, headers: Record<string, string> = { authorization: `Bearer ${KEY}`, "content-type": "application/json" }) {
  const r = await fetch(`${server.url}${path}`, { method: "POST", headers, body });
  return { status: r.status, headers: r.headers, body: (await r.json()) as { error: { message: string; type: string; param: string | null; code: string | null } } };
}

const metricsText = async () => (await fetch(`${server.url}/metrics`)).text();
/** A sample's value; 0 for a labelled series not yet created. */
const metric = (text: string, line: RegExp) => Number(text.split("\n").find((l) => line.test(l))?.split(" ").pop() ?? 0);

describe("OpenAI-compatible server, official client", () => {
  it("lists the base model and every adapter", async () => {
    const ids = (await client.models.list()).data.map((m) => m.id);
    expect(ids).toEqual(["tiny-tasks", "reverse", "sort"]);
  });

  it("a completion with an adapter equals generate() alone", async () => {
    const r = await client.completions.create({ model: "reverse", prompt: "3 1 4 1 5 = ", max_tokens: 12, temperature: 0 });
    expect(r.choices[0].text).toBe(await solo({ adapter: "reverse", text: "3 1 4 1 5 = ", maxNewTokens: 12, temperature: 0 }));
    expect(r.choices[0].finish_reason).toMatch(/^(stop|length)$/);
    expect(r.usage).toMatchObject({ prompt_tokens: model.tokenizer.encode("3 1 4 1 5 = ").length });
  });

  it("concurrent requests for different adapters, base and sampled, share batches and each equals its solo run", async () => {
    const inputs = ["3 1 4 1 5 = ", "9 2 7 = ", "8 6 = ", "2 7 1 8 2 8 = "];
    const plans = Array.from({ length: 12 }, (_, i) => ({
      model: ["reverse", "tiny-tasks:sort", "base", "sort@1", "base:reverse"][i % 5],
      adapter: [ "reverse", "sort", undefined, "sort", "reverse"][i % 5],
      prompt: inputs[i % inputs.length],
      max_tokens: 6 + (i % 7),
      temperature: i % 3 === 0 ? 0 : 0.9,
      top_p: i % 4 === 1 ? 0.8 : undefined,
      seed: 100 + i,
      stop: i % 6 === 5 ? [" 1"] : undefined,
    }));
    const before = metric(await metricsText(), /^softprompt_batch_size_bucket\{le="1"\}/);
    const answers = await Promise.all(plans.map(({ adapter: _a, ...p }) => client.completions.create(p)));
    for (const [i, p] of plans.entries()) {
      const expected = await solo({ adapter: p.adapter, text: p.prompt, maxNewTokens: p.max_tokens, temperature: p.temperature, topP: p.top_p, seed: p.seed, stop: p.stop });
      expect(answers[i].choices[0].text, `request ${i} (${p.model})`).toBe(expected);
    }
    // Some steps advanced more than one row: the requests were batched, not served one at a time.
    const text = await metricsText();
    expect(metric(text, /^softprompt_batch_size_count/) - metric(text, /^softprompt_batch_size_bucket\{le="1"\}/)).toBeGreaterThan(0);
    expect(before).toBeLessThanOrEqual(metric(text, /^softprompt_batch_size_bucket\{le="1"\}/));
  });

  it("n choices draw with seed, seed + 1, …", async () => {
    const r = await client.completions.create({ model: "sort", prompt: "5 3 9 = ", max_tokens: 8, temperature: 1, seed: 7, n: 3 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    for (const c of r.choices) expect(c.text).toBe(await solo({ adapter: "sort", text: "5 3 9 = ", maxNewTokens: 8, temperature: 1, seed: 7 + c.index }));
  });

  it("streams completions and chat as SSE chunks that add up to the whole answer", async () => {
    const stream = await client.completions.create({ model: "reverse", prompt: "3 1 4 1 5 = ", max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let finish: string | null = null;
    let usage: unknown;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.text ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage ??= chunk.usage ?? undefined;
    }
    expect(text).toBe(await solo({ adapter: "reverse", text: "3 1 4 1 5 = ", maxNewTokens: 12, temperature: 0 }));
    expect(chunks).toBeGreaterThan(2);
    expect(finish).toMatch(/^(stop|length)$/);
    expect(usage).toMatchObject({ prompt_tokens: 6 });

    const chat = await client.chat.completions.create({ model: "sort", messages: [{ role: "user", content: "9 2 7 = " }], max_tokens: 10, temperature: 0, stream: true });
    let content = "";
    let role: string | undefined;
    for await (const chunk of chat) {
      role ??= chunk.choices[0]?.delta.role;
      content += chunk.choices[0]?.delta.content ?? "";
    }
    expect(role).toBe("assistant");
    expect(content).toBe(await solo({ adapter: "sort", inputIds: chatIds("9 2 7 = "), maxNewTokens: 10, temperature: 0 }));
  });

  it("logprobs: each answer token's log-probability and alternatives, as scoring the answer gives them, whole or streamed, completions and chat", async () => {
    const prompt = "3 1 4 1 5 = ";
    const [solo] = await generate(model.lm, model.tokenizer, [{ text: prompt, maxNewTokens: 12, prompt: adapters.reverse.prompt }]);
    const answerIds = solo.finishReason === "eos" ? solo.ids.slice(0, -1) : solo.ids;
    const [scored] = await scoreCompletions(model.lm, [{ inputIds: model.tokenizer.encode(prompt), completionIds: answerIds, prompt: adapters.reverse.prompt }]);
    // Each token's text is what it adds to the answer (this tokenizer's decoder puts the spaces between digits).
    const tokens = answerIds.map((_, i) => model.tokenizer.decode(answerIds.slice(0, i + 1)).slice(model.tokenizer.decode(answerIds.slice(0, i)).length));

    const whole = await client.completions.create({ model: "reverse", prompt, max_tokens: 12, temperature: 0, logprobs: 2 });
    const lp = whole.choices[0].logprobs!;
    expect(whole.choices[0].text).toBe(solo.text);
    expect(lp.tokens).toEqual(tokens);
    expect(lp.tokens!.join("")).toBe(solo.text);
    lp.token_logprobs!.forEach((v, i) => expect(v).toBeCloseTo(scored.tokenLogProbs[i], 4));
    expect(lp.text_offset).toEqual(tokens.map((_, i) => tokens.slice(0, i).join("").length));
    for (const [i, top] of lp.top_logprobs!.entries()) {
      expect(Object.keys(top).length).toBeLessThanOrEqual(3); // the 2 most likely, and the sampled token when not among them
      expect(top[tokens[i]]).toBeCloseTo(lp.token_logprobs![i], 6);
      expect(Math.max(...Object.values(top))).toBeCloseTo(lp.token_logprobs![i], 6); // greedy took the most likely
    }

    const stream = await client.completions.create({ model: "reverse", prompt, max_tokens: 12, temperature: 0, logprobs: 2, stream: true });
    const streamed = { tokens: [] as string[], token_logprobs: [] as number[], text_offset: [] as number[] };
    for await (const chunk of stream) {
      const part = chunk.choices[0]?.logprobs;
      if (part == null) continue;
      streamed.tokens.push(...part.tokens!);
      streamed.token_logprobs.push(...part.token_logprobs!);
      streamed.text_offset.push(...part.text_offset!);
    }
    expect(streamed).toEqual({ tokens: lp.tokens, token_logprobs: lp.token_logprobs, text_offset: lp.text_offset });

    const chat = await client.chat.completions.create({ model: "reverse", messages: [{ role: "user", content: prompt }], max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = chat.choices[0].logprobs!.content!;
    expect(content.map((c) => c.token).join("")).toBe(chat.choices[0].message.content);
    for (const c of content) {
      expect(c.top_logprobs).toHaveLength(3);
      expect(c.top_logprobs[0]).toEqual({ token: c.token, logprob: c.logprob, bytes: c.bytes });
      expect(c.bytes).toEqual([...Buffer.from(c.token, "utf8")]);
    }
    // A stop string cuts the text: the tokens whose text starts after the cut are not reported.
    const cut = await client.completions.create({ model: "reverse", prompt, max_tokens: 12, temperature: 0, logprobs: 0, stop: [" 4"] });
    expect(cut.choices[0].text).toBe(solo.text!.slice(0, solo.text!.indexOf(" 4")));
    expect(cut.choices[0].logprobs!.tokens!.join("")).toBe(cut.choices[0].text);
    const plain = await client.chat.completions.create({ model: "reverse", messages: [{ role: "user", content: prompt }], max_tokens: 4, temperature: 0 });
    expect(plain.choices[0].logprobs).toBeNull();
  });

  it("chat completions render the model's chat template", async () => {
    const r = await client.chat.completions.create({ model: "base:reverse", messages: [{ role: "user", content: "3 1 4 = " }], max_tokens: 10, temperature: 0.7, seed: 3 });
    expect(r.object).toBe("chat.completion");
    expect(r.choices[0].message).toMatchObject({ role: "assistant" });
    expect(r.choices[0].message.content).toBe(await solo({ adapter: "reverse", inputIds: chatIds("3 1 4 = "), maxNewTokens: 10, temperature: 0.7, seed: 3 }));
  });

  it("/v1/classify gives the choices' probabilities, as scoreChoices scores them", async () => {
    const r = await post("/v1/classify", JSON.stringify({ model: "sort", input: "3 1 2 = ", choices: ["1 2 3", "3 2 1"] }));
    expect(r.status).toBe(200);
    const body = r.body as unknown as { label: string; index: number; choices: { probability: number; logprob: number }[] };
    const encode = (t: string, special: boolean) => model.tokenizer.encode(t, { addSpecialTokens: special });
    const expected = await scoreChoices(model.lm, { inputIds: encode("3 1 2 = ", true), choices: [encode("1 2 3", false), encode("3 2 1", false)], prompt: adapters.sort.prompt });
    expect(body.index).toBe(expected.best);
    expect(body.choices.map((c) => c.logprob)).toEqual(expected.scores.map((s) => s.logLikelihood));
    expect(body.choices.reduce((s, c) => s + c.probability, 0)).toBeCloseTo(1, 10);
  });

  it("bad input: the matching status and OpenAI's error body, and the server keeps serving", async () => {
    const unknown = await apiError(client.completions.create({ model: "nope", prompt: "1 = ", max_tokens: 2 }));
    expect([unknown.status, unknown.param, unknown.code]).toEqual([404, "model", "model_not_found"]);

    const tooLong = await apiError(client.completions.create({ model: "reverse", prompt: "1 ".repeat(70), max_tokens: 2 }));
    expect([tooLong.status, tooLong.code, tooLong.param]).toEqual([400, "context_length_exceeded", "prompt"]);
    const overLimit = await apiError(client.completions.create({ model: "reverse", prompt: "1 = ", max_tokens: 41 }));
    expect([overLimit.status, overLimit.param]).toEqual([400, "max_tokens"]);
    expect(overLimit.message).toContain("limit of 40");
    const noRoom = await apiError(client.chat.completions.create({ model: "reverse", messages: [{ role: "user", content: "1 ".repeat(20) + "= " }], max_tokens: 40 }));
    expect([noRoom.status, noRoom.code, noRoom.param]).toEqual([400, "context_length_exceeded", "max_tokens"]);

    const extra = { model: "reverse", prompt: "1 = ", max_tokens: 2, frobnicate: true } as unknown as CompletionCreateParamsNonStreaming;
    const unknownField = await apiError(client.completions.create(extra));
    expect([unknownField.status, unknownField.param, unknownField.code]).toEqual([400, "frobnicate", "unknown_parameter"]);
    const tooMany = await apiError(client.completions.create({ model: "reverse", prompt: "1 = ", max_tokens: 2, logprobs: 6 }));
    expect([tooMany.status, tooMany.param]).toEqual([400, "logprobs"]);
    const topAlone = await apiError(client.chat.completions.create({ model: "reverse", messages: [{ role: "user", content: "1 = " }], max_tokens: 2, top_logprobs: 2 }));
    expect([topAlone.status, topAlone.param]).toEqual([400, "top_logprobs"]);
    const echo = await apiError(client.completions.create({ model: "reverse", prompt: "1 = ", max_tokens: 2, echo: true }));
    expect([echo.status, echo.param, echo.code]).toEqual([400, "echo", "unsupported_parameter"]);
    const badValue = await apiError(client.completions.create({ model: "reverse", prompt: "1 = ", max_tokens: 2, temperature: 5 }));
    expect([badValue.status, badValue.param]).toEqual([400, "temperature"]);

    const wrongKey = await apiError(new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "wrong", maxRetries: 0 }).models.list());
    expect([wrongKey.status, wrongKey.code]).toEqual([401, "invalid_api_key"]);
    const noKey = await post("/v1/completions", "{}", { "content-type": "application/json" });
    expect(noKey.status).toBe(401);

    const malformed = await post("/v1/completions", '{"model": "reverse", "prompt": ');
    expect(malformed.status).toBe(400);
    expect(malformed.body.error).toMatchObject({ type: "invalid_request_error", param: null });
    const oversize = await post("/v1/completions", JSON.stringify({ model: "reverse", prompt: "1 ".repeat(10_000) }));
    expect(oversize.status).toBe(413);
    expect(Object.keys(oversize.body.error).sort()).toEqual(["code", "message", "param", "type"]);

    // Everyone else is still served.
    const ok = await client.completions.create({ model: "sort", prompt: "4 2 = ", max_tokens: 4, temperature: 0 });
    expect(ok.choices[0].text).toBe(await solo({ adapter: "sort", text: "4 2 = ", maxNewTokens: 4, temperature: 0 }));
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200); // open without a key
  });

  it("hot reload: an adapter added or removed while serving appears and goes without a restart; a foreign one is refused", async () => {
    await addAdapter({ root, name: "fresh", source: runs.sort });
    expect(await eventually(async () => (await client.models.list()).data.some((m) => m.id === "fresh"))).toBe(true);
    const r = await client.completions.create({ model: "fresh", prompt: "9 2 7 = ", max_tokens: 6, temperature: 0 });
    expect(r.choices[0].text).toBe(await solo({ adapter: "sort", text: "9 2 7 = ", maxNewTokens: 6, temperature: 0 }));

    await removeAdapter(root, "fresh");
    expect(await eventually(async () => !(await client.models.list()).data.some((m) => m.id === "fresh"))).toBe(true);
    expect((await apiError(client.completions.create({ model: "fresh", prompt: "1 = ", max_tokens: 2 }))).status).toBe(404);

    await addAdapter({ root, name: "alien", source: await foreignAdapter(runs.reverse, join(work, "alien")) });
    expect(await eventually(() => logged.some((l) => l.includes("refused alien@1")))).toBe(true);
    const alien = await apiError(client.completions.create({ model: "alien", prompt: "1 = ", max_tokens: 2 }));
    expect(alien.status).toBe(404);
    expect(alien.message).toContain("another base model");
  });

  it("a request arriving mid-stream joins the running batch: it is answered while the long row still runs", async () => {
    const seed = await seedRunningToLimit();
    const stream = await client.completions.create({ model: "base", prompt: "1 ", max_tokens: 40, temperature: 1.5, seed, stream: true });
    const chunks = stream[Symbol.asyncIterator]();
    let text = ((await chunks.next()).value as { choices: { text: string }[] }).choices[0].text;
    const short = await client.completions.create({ model: "sort", prompt: "4 2 = ", max_tokens: 2, temperature: 0 });
    const health = (await (await fetch(`${server.url}/healthz`)).json()) as { running: number };
    expect(health.running).toBe(1); // the long row, still going
    expect(short.choices[0].text).toBe(await solo({ adapter: "sort", text: "4 2 = ", maxNewTokens: 2, temperature: 0 }));
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) text += next.value.choices[0]?.text ?? "";
    expect(text).toBe(await solo({ text: "1 ", maxNewTokens: 40, temperature: 1.5, seed }));
  });

  it("a client that disconnects mid-stream cancels its rows", async () => {
    // Had it not been cancelled, the row would count 40 tokens.
    const seed = await seedRunningToLimit();
    const tokensBefore = metric(await metricsText(), /^softprompt_completion_tokens_total\{adapter="base"\}/);
    const abort = new AbortController();
    const stream = await client.completions.create({ model: "base", prompt: "1 ", max_tokens: 40, temperature: 1.5, seed, stream: true }, { signal: abort.signal });
    let chunks = 0;
    try {
      for await (const _chunk of stream) {
        chunks++;
        abort.abort();
      }
    } catch {
      // the client may report its own abort as an error
    }
    expect(chunks).toBe(1);
    expect(await eventually(async () => ((await (await fetch(`${server.url}/healthz`)).json()) as { running: number }).running === 0)).toBe(true);
    expect(metric(await metricsText(), /^softprompt_completion_tokens_total\{adapter="base"\}/)).toBe(tokensBefore);
  });

  it("/metrics: requests, tokens, time to first token and latency per adapter, queue and batch", async () => {
    const text = await metricsText();
    expect(text).toMatch(/^softprompt_requests_total\{endpoint="\/v1\/completions",adapter="reverse",status="200"\} \d+/m);
    expect(text).toMatch(/^softprompt_requests_total\{endpoint="\/v1\/completions",adapter="none",status="404"\} \d+/m);
    expect(text).toMatch(/^softprompt_prompt_tokens_total\{adapter="sort"\} \d+/m);
    expect(text).toMatch(/^softprompt_time_to_first_token_seconds_count\{adapter="sort"\} \d+/m);
    expect(text).toMatch(/^softprompt_request_duration_seconds_bucket\{le="0.5",adapter="base"\} \d+/m);
    expect(text).toMatch(/^softprompt_queue_depth 0/m);
  });
});

describe("limits and shutdown", () => {
  it("a full queue answers 429 with Retry-After; a request over its time limit 408; shutdown finishes in-flight requests and refuses new ones", async () => {
    const small = await startServer({ model: modelDir, adapters: root, maxQueue: 1, requestTimeoutMs: 60_000, log: () => {} });
    const c = new OpenAI({ baseURL: `${small.url}/v1`, apiKey: "none", maxRetries: 0 });
    const full = await apiError(c.completions.create({ model: "reverse", prompt: "1 = ", max_tokens: 2, n: 2 }));
    expect(full.status).toBe(429);
    expect(full.headers?.get("retry-after")).toBe("1");

    // Shutdown while a request streams: it completes; one sent after gets 503 or no connection at all.
    const stream = await c.completions.create({ model: "reverse", prompt: "3 1 4 = ", max_tokens: 30, temperature: 1, seed: 5, stream: true });
    const chunks = stream[Symbol.asyncIterator]();
    let text = ((await chunks.next()).value as { choices: { text: string }[] }).choices[0].text;
    const closing = small.close();
    const late = await c.completions.create({ model: "reverse", prompt: "1 = ", max_tokens: 2 }).then(
      () => "served",
      (e: unknown) => (e instanceof APIError && e.status !== undefined ? e.status : "refused"),
    );
    expect([503, "refused"]).toContain(late);
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) text += next.value.choices[0]?.text ?? "";
    expect(text).toBe(await solo({ adapter: "reverse", text: "3 1 4 = ", maxNewTokens: 30, temperature: 1, seed: 5 }));
    await closing;

    const slow = await startServer({ model: modelDir, adapters: root, requestTimeoutMs: 1, log: () => {} });
    try {
      const timedOut = await apiError(new OpenAI({ baseURL: `${slow.url}/v1`, apiKey: "none", maxRetries: 0 }).completions.create({ model: "base", prompt: "1 = ", max_tokens: 30, temperature: 1 }));
      expect([timedOut.status, timedOut.code]).toEqual([408, "request_timeout"]);
    } finally {
      await slow.close();
    }
  });
});
