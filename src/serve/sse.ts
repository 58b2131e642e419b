/**
 * A streamed answer as server-sent events in OpenAI's chunk format (`data: {...}` … `data: [DONE]`),
 * written straight to the response. Each chunk is one string built from a prefix made once per request
 * (id, object, created, model), so a token costs one JSON.stringify of its text, not of a fresh object
 * graph; the chunks of one scheduler step go out in one write (flushed on the next tick), and a request's
 * last chunks (its last text, finish, usage and `[DONE]`) in the one `end`.
 */
import type { ServerResponse } from "node:http";

export interface SseOptions {
  kind: "completion" | "chat";
  id: string;
  created: number;
  model: string;
  /** Choices per request: a chat stream opens each with the assistant's role. */
  choices: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export type FinishReason = "stop" | "length";

export interface SseStream {
  /** `logprobs`: the chunk's log-probabilities, already JSON (logprobs.ts), or none. */
  delta(index: number, text: string, logprobs?: string): void;
  finish(index: number, reason: FinishReason): void;
  /** The last chunks: usage (when given) and `[DONE]`; ends the response. */
  end(usage?: Usage): void;
  /** An error object as the last event (its HTTP status was already 200); ends the response. */
  error(body: unknown): void;
}

export function sseStream(res: ServerResponse, options: SseOptions): SseStream {
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" });
  const chat = options.kind === "chat";
  const head = `data: {"id":${JSON.stringify(options.id)},"object":"${chat ? "chat.completion.chunk" : "text_completion"}","created":${options.created},"model":${JSON.stringify(options.model)},"choices":[`;
  let pending = "";
  let flushing = false;
  const open = () => !res.writableEnded && !res.destroyed;
  const flush = () => {
    flushing = false;
    if (pending !== "" && open()) res.write(pending);
    pending = "";
  };
  const push = (event: string) => {
    pending += event;
    if (!flushing) {
      flushing = true;
      process.nextTick(flush);
    }
  };
  const close = (last: string) => {
    if (open()) res.end(pending + last);
    pending = "";
  };
  // Key order and fields as OpenAI sends them (and as JSON.stringify of the same object would).
  const choice = (index: number, text: string | undefined, finish: FinishReason | null, role?: string, logprobs = "null") =>
    chat
      ? `{"index":${index},"delta":{${role !== undefined ? `"role":"${role}"${text !== undefined ? "," : ""}` : ""}${text !== undefined ? `"content":${JSON.stringify(text)}` : ""}},"logprobs":${logprobs},"finish_reason":${finish === null ? "null" : `"${finish}"`}}`
      : `{"index":${index},"text":${JSON.stringify(text ?? "")},"logprobs":${logprobs},"finish_reason":${finish === null ? "null" : `"${finish}"`}}`;
  if (chat) push(`${head}${Array.from({ length: options.choices }, (_, index) => choice(index, "", null, "assistant")).join(",")}]}\n\n`);
  return {
    delta: (index, text, logprobs) => push(`${head}${choice(index, text, null, undefined, logprobs)}]}\n\n`),
    finish: (index, reason) => push(`${head}${choice(index, chat ? undefined : "", reason)}]}\n\n`),
    end: (usage) => close(`${usage !== undefined ? `${head}],"usage":${JSON.stringify(usage)}}\n\n` : ""}data: [DONE]\n\n`),
    error: (body) => close(`data: ${JSON.stringify(body)}\n\n`),
  };
}
