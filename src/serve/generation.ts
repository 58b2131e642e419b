/**
 * `POST /v1/completions` and `POST /v1/chat/completions`: a body becomes rows (each prompt × n), the
 * rows go to the scheduler, and the answer comes back whole or streamed as server-sent events in
 * OpenAI's chunk format (`data: {...}` … `data: [DONE]`). A row is exactly what `generate()` would be
 * given for the same request: the text encoded as `generate` encodes it (chat: the template rendered
 * with the generation prompt, encoded without extra special tokens, as training does), the adapter's
 * prompt, and the sampling options; choice i of n draws with seed + i.
 */
import { randomInt, randomUUID } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { DecodeOptions, Generation } from "../infer/engine.js";
import { checkIds } from "../infer/layout.js";
import type { PromptState, SoftPrompt } from "../infer/kv-cache.js";
import type { Example } from "../data/index.js";
import { templateEngineRows } from "../template/index.js";
import { fail } from "../util/errors.js";
import type { ServeContext } from "./context.js";
import { ServeError, serveFail, toHttpError } from "./errors.js";
import { resolveModel, type ResolvedModel } from "./models.js";
import { type ChatBody, type CompletionBody, chatSchema, completionSchema, parseBody } from "./openai-params.js";
import { TextStream } from "./text-stream.js";
import { type LogprobEntry, LogprobTrack, chatLogprobs, completionLogprobs } from "./logprobs.js";
import { type FinishReason, type Usage, sseStream } from "./sse.js";
import type { Ticket } from "./scheduler.js";

type Kind = "completion" | "chat";

/** For the request counter (app.ts counts every answered request): the adapter a request used, and a stream's error status (its HTTP status was 200). */
export const requestNotes = new WeakMap<FastifyRequest, { adapter: string; status?: number }>();

/** A request, checked and tokenized: what its rows need. */
interface Job {
  kind: Kind;
  model: string;
  resolved: ResolvedModel;
  /** One per prompt (chat: one). */
  inputs: number[][];
  /** A template adapter's: each input's own rendered prefix (the input is then its last written token). */
  prompts?: (SoftPrompt | undefined)[];
  n: number;
  decode: DecodeOptions;
  stream: boolean;
  includeUsage: boolean;
  /** Whether the answer carries token log-probabilities (the rows ask for them by `decode.logprobs`). */
  logprobs: boolean;
}

/** Library fields named as the request names them (OpenAI's `param`). */
export function paramOf(kind: Kind) {
  return (field: string): string => {
    if (field.endsWith("maxNewTokens")) return "max_tokens";
    if (field.endsWith("inputIds") || field === "chat_template") return kind === "chat" ? "messages" : "prompt";
    if (field.startsWith("--code")) return "codes";
    return field;
  };
}

export async function handleGeneration(ctx: ServeContext, kind: Kind, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const arrived = performance.now();
  const job = await prepare(ctx, kind, request.body);
  const { scheduler, metrics } = ctx;
  const label = job.resolved.label;
  requestNotes.set(request, { adapter: label });
  scheduler.reserve(job.inputs.length * job.n);
  metrics.promptTokens.inc({ adapter: label }, job.inputs.reduce((s, ids) => s + ids.length, 0));
  const loaded = job.resolved.adapter?.loaded;
  const shared = loaded === undefined || "template" in loaded ? undefined : ctx.promptCache.get(loaded.prompt);
  const prompts = job.inputs.map((_, p) => (job.prompts?.[p] === undefined ? shared : ctx.promptCache.get(job.prompts[p]!)));
  const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID().replaceAll("-", "")}`;
  const created = Math.floor(Date.now() / 1000);
  const out = job.stream ? openStream(reply, job, id, created) : undefined;

  let firstToken = true;
  const run = runRows(ctx, job, prompts, {
    onToken: () => {
      if (firstToken) metrics.timeToFirstToken.observe({ adapter: label }, (performance.now() - arrived) / 1000);
      firstToken = false;
    },
    onDelta: (index, text, entries) => {
      const logprobs = entries === undefined ? undefined : kind === "chat" ? chatLogprobs(entries) : completionLogprobs(entries);
      out?.delta(index, text, logprobs === undefined ? undefined : JSON.stringify(logprobs));
    },
    onRowDone: (index, g) => out?.finish(index, finishReason(g)),
  });
  scheduler.arrived(request);
  // A client that goes away cancels its rows; the others keep their places in the batch.
  reply.raw.on("close", () => {
    if (!reply.raw.writableFinished) run.cancel();
  });

  try {
    const results = await run.done;
    metrics.latency.observe({ adapter: label }, (performance.now() - arrived) / 1000);
    const completionTokens = results.reduce((s, g) => s + g.generation.ids.length, 0);
    metrics.completionTokens.inc({ adapter: label }, completionTokens);
    const promptTokens = job.inputs.reduce((s, ids) => s + ids.length, 0);
    const usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
    if (out !== undefined) return out.end(usage);
    const respond = kind === "chat" ? chatResponse : completionResponse;
    await reply.send(respond(id, created, job.model, results, usage));
  } catch (err) {
    if (out === undefined) throw err; // the error handler answers it
    const http = toHttpError(err, paramOf(kind));
    requestNotes.set(request, { adapter: label, status: http.status });
    out.error(http.body);
  }
}

/** Check the body against the limits and the model, and tokenize it (a template adapter's: render it). */
async function prepare(ctx: ServeContext, kind: Kind, raw: unknown): Promise<Job> {
  const { model, limits } = ctx;
  const body = kind === "chat" ? parseBody<ChatBody>(chatSchema, raw) : parseBody<CompletionBody>(completionSchema, raw);
  const resolved = resolveModel(body.model, ctx.baseId, ctx.registry);
  const tokenizer = model.tokenizer;
  const loaded = resolved.adapter?.loaded;
  const template = loaded !== undefined && "template" in loaded ? loaded.template : undefined;
  if (body.codes !== undefined && template === undefined) fail("usage", "codes choose a template adapter's learned control codes; this model has none", { field: "codes" });
  let inputs: number[][];
  let prompts: (SoftPrompt | undefined)[] | undefined;
  let closing: string[] = [];
  if (template !== undefined) {
    const rows = await templateEngineRows(model.lm, tokenizer, template, templateExamples(body), { codes: new Map(Object.entries(body.codes ?? {})), maxLength: limits.contextLength - 1 });
    inputs = rows.map((r) => r.inputIds);
    prompts = rows.map((r) => r.prompt);
    closing = rows[0]?.stop ?? [];
  } else if ("messages" in body) {
    const messages = body.messages.map((m) => ({ role: m.role, content: typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join("") }));
    const text = tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    inputs = [tokenizer.encode(text, { addSpecialTokens: false })];
  } else {
    const p = body.prompt;
    const texts: (string | number[])[] = typeof p === "string" ? [p] : typeof p[0] === "number" ? [p as number[]] : (p as string[] | number[][]);
    inputs = texts.map((t) => (typeof t === "string" ? tokenizer.encode(t) : [...t]));
  }
  const param = kind === "chat" ? "messages" : "prompt";
  inputs.forEach((ids, i) => {
    const field = inputs.length > 1 ? `${param}[${i}]` : param;
    if (ids.length === 0) fail("usage", `the ${param} is empty: give at least one token to continue from`, { field });
    checkIds(model.lm, ids, field);
  });

  const n = body.n ?? 1;
  if (n > limits.maxN) fail("usage", `n is ${n}, over this server's limit of ${limits.maxN}`, { field: "n" });
  const maxParam = kind === "chat" && body.max_tokens == null && "max_completion_tokens" in body && body.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens";
  const asked = body.max_tokens ?? ("max_completion_tokens" in body ? body.max_completion_tokens : undefined) ?? undefined;
  if (asked != null && asked > limits.maxTokens) fail("usage", `${maxParam} is ${asked}, over this server's limit of ${limits.maxTokens}`, { field: maxParam });
  const numVirtual = prompts !== undefined ? Math.max(...prompts.map((p) => (p === undefined ? 0 : p.embeddings.length / model.config.hiddenSize))) : loaded !== undefined && !("template" in loaded) ? loaded.numVirtual : 0;
  const longest = Math.max(...inputs.map((ids) => ids.length));
  const room = limits.contextLength - numVirtual - longest;
  const used = `${numVirtual > 0 ? `${numVirtual} virtual tokens + ` : ""}${longest} in the ${param}`;
  if (room < 1) {
    serveFail("context_length_exceeded", `the model's context is ${limits.contextLength} tokens, and ${used} leave no room for a completion`, param);
  }
  // OpenAI's defaults: 16 tokens for completions; for chat, as many as the context allows.
  const maxNewTokens = asked ?? Math.min(kind === "chat" ? limits.maxTokens : 16, room);
  if (maxNewTokens > room) {
    serveFail("context_length_exceeded", `the model's context is ${limits.contextLength} tokens, but ${used} + ${maxNewTokens} to generate (${maxParam}) would need ${limits.contextLength - room + maxNewTokens}`, maxParam);
  }
  const askedStop = body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop;
  const stop = askedStop.length + closing.length === 0 ? undefined : [...askedStop, ...closing];
  const decode: DecodeOptions = {
    maxNewTokens,
    temperature: body.temperature ?? 1, // OpenAI's default: sampling
    ...(body.top_p != null ? { topP: body.top_p } : {}),
    ...(body.top_k !== undefined && body.top_k > 0 ? { topK: body.top_k } : {}),
    ...(body.repetition_penalty !== undefined ? { repetitionPenalty: body.repetition_penalty } : {}),
    ...(stop !== undefined ? { stop } : {}),
    // No seed: a fresh one, as OpenAI samples differently each time.
    seed: body.seed ?? randomInt(2 ** 47),
    ...logprobsAsked(body),
  };
  return { kind, model: body.model, resolved, inputs, prompts, n, decode, stream: body.stream ?? false, includeUsage: body.stream_options?.include_usage ?? false, logprobs: decode.logprobs !== undefined };
}

/** How many alternatives per token a body asks log-probabilities for (completions: `logprobs: N`; chat: `logprobs: true` and `top_logprobs`). */
function logprobsAsked(body: ChatBody | CompletionBody): Pick<DecodeOptions, "logprobs"> {
  if (!("messages" in body)) return body.logprobs == null ? {} : { logprobs: body.logprobs };
  if (body.top_logprobs != null && body.logprobs !== true) fail("usage", "top_logprobs needs logprobs: true", { field: "top_logprobs" });
  return body.logprobs === true ? { logprobs: body.top_logprobs ?? 0 } : {};
}

/** A request as rows for a template: each text prompt fills {input}; a chat is a chat row (earlier turns as context). */
function templateExamples(body: ChatBody | CompletionBody): Example[] {
  if ("messages" in body) {
    const messages = body.messages.map((m) => ({ role: m.role === "developer" ? ("system" as const) : m.role, content: typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join("") }));
    return [{ kind: "chat", messages }];
  }
  const texts = typeof body.prompt === "string" ? [body.prompt] : body.prompt;
  if (!texts.every((t): t is string => typeof t === "string")) fail("usage", "a template adapter renders text: give the prompt as text, not token ids", { field: "prompt" });
  return texts.map((text): Example => ({ kind: "prompt", prompt: text, completion: "", fields: { input: text } }));
}

interface RowHooks {
  onToken(): void;
  /** `entries`: the log-probabilities of the tokens whose text starts in what has been sent, when the job asked for them. */
  onDelta(index: number, text: string, entries?: LogprobEntry[]): void;
  onRowDone(index: number, generation: Generation): void;
}

/** A choice's generation, and its tokens' log-probabilities when the job asked for them. */
interface ChoiceResult {
  generation: Generation;
  logprobs?: LogprobEntry[];
}

/** Submit every row of a job; `done` gives their results in choice order, or the first error (the other rows cancelled). */
function runRows(ctx: ServeContext, job: Job, prompts: readonly (Promise<PromptState> | undefined)[], hooks: RowHooks): { done: Promise<ChoiceResult[]>; cancel(): void } {
  const tickets: Ticket[] = [];
  const results: ChoiceResult[] = [];
  let left = job.inputs.length * job.n;
  let cancelAll = () => {};
  const done = new Promise<ChoiceResult[]>((resolve, reject) => {
    let settled = false;
    const settle = (err?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err === undefined) return resolve(results);
      for (const t of tickets) t.cancel();
      reject(err);
    };
    cancelAll = () => settle(new ServeError("request_timeout", "the client went away: its rows were cancelled"));
    const timer = setTimeout(
      () => settle(new ServeError("request_timeout", `the request took longer than this server's limit of ${ctx.limits.requestTimeoutMs} ms; ask for fewer tokens`)),
      ctx.limits.requestTimeoutMs,
    );
    try {
      job.inputs.forEach((inputIds, p) => submitChoices(inputIds, p));
    } catch (err) {
      settle(err); // e.g. the queue filled up half way: the rows already queued are cancelled
    }
    function submitChoices(inputIds: number[], p: number) {
      for (let i = 0; i < job.n; i++) {
        const index = p * job.n + i;
        const text = new TextStream(ctx.model.tokenizer, job.decode.stop);
        const track = job.logprobs ? new LogprobTrack(ctx.model.tokenizer) : undefined;
        let sent = 0;
        const delta = (part: string) => {
          sent += part.length;
          hooks.onDelta(index, part, track?.take(sent));
        };
        const row = { ...job.decode, seed: job.decode.seed! + i, inputIds, prompt: prompts[p] };
        tickets.push(
          ctx.scheduler.submit(row, {
            onToken: (token, last, logprob) => {
              hooks.onToken();
              if (logprob !== undefined) track?.push(logprob);
              if (job.stream && !last) {
                const part = text.push(token);
                if (part !== "") delta(part);
              }
            },
            onDone: (g) => {
              if (job.stream) {
                const rest = text.finish(g);
                if (rest !== "") delta(rest);
              }
              results[index] = { generation: g, ...(track !== undefined ? { logprobs: track.take((g.text ?? "").length) } : {}) };
              hooks.onRowDone(index, g);
              if (--left === 0) settle();
            },
            onError: (err) => settle(err),
          }),
        );
      }
    }
  });
  return { done, cancel: () => cancelAll() };
}

const finishReason = (g: Generation): FinishReason => (g.finishReason === "length" ? "length" : "stop");

function completionResponse(id: string, created: number, model: string, results: ChoiceResult[], usage: Usage) {
  return {
    id,
    object: "text_completion",
    created,
    model,
    choices: results.map(({ generation: g, logprobs }, index) => ({
      index,
      text: g.text ?? "",
      logprobs: logprobs === undefined ? null : completionLogprobs(logprobs),
      finish_reason: finishReason(g),
    })),
    usage,
  };
}

function chatResponse(id: string, created: number, model: string, results: ChoiceResult[], usage: Usage) {
  return {
    id,
    object: "chat.completion",
    created,
    model,
    choices: results.map(({ generation: g, logprobs }, index) => ({
      index,
      message: { role: "assistant", content: g.text ?? "" },
      logprobs: logprobs === undefined ? null : chatLogprobs(logprobs),
      finish_reason: finishReason(g),
    })),
    usage,
  };
}

/** The reply taken over from fastify and written as server-sent events. */
function openStream(reply: FastifyReply, job: Job, id: string, created: number) {
  reply.hijack();
  const events = sseStream(reply.raw, { kind: job.kind, id, created, model: job.model, choices: job.inputs.length * job.n });
  return { ...events, end: (usage: Usage) => events.end(job.includeUsage ? usage : undefined) };
}
