// The streamed answer's events: each chunk is exactly the JSON of OpenAI's chunk object, the chunks of one
// tick go out in one write, and a request's last text, finish, usage and [DONE] in the one `end`.
import type { ServerResponse } from "node:http";
import { describe, expect, it } from "vitest";
import { sseStream } from "../../src/serve/sse.js";

/** A response that records its writes. */
function recorder() {
  const writes: string[] = [];
  let ended: string | undefined;
  const res = {
    status: 0,
    writableEnded: false,
    destroyed: false,
    writeHead(status: number) {
      this.status = status;
      return this;
    },
    write(chunk: string) {
      writes.push(chunk);
      return true;
    },
    end(chunk: string) {
      ended = chunk;
      this.writableEnded = true;
      return this;
    },
  };
  return { res: res as unknown as ServerResponse, writes, ended: () => ended };
}

const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve));
const events = (text: string) => text.split("\n\n").filter((e) => e !== "").map((e) => e.replace(/^data: /, ""));
const base = { id: "cmpl-1", created: 1700000000, model: "reverse" };

describe("sseStream", () => {
  it("writes OpenAI's completion chunks, one write per tick, the last chunks and [DONE] in the end", async () => {
    const { res, writes, ended } = recorder();
    const out = sseStream(res, { kind: "completion", ...base, choices: 2 });
    out.delta(0, "4 ");
    out.delta(1, 'say "1"\n');
    expect(writes).toEqual([]); // flushed on the next tick, together
    await nextTick();
    expect(writes).toHaveLength(1);
    const chunk = (choices: unknown[]) => JSON.stringify({ id: "cmpl-1", object: "text_completion", created: 1700000000, model: "reverse", choices });
    expect(events(writes[0])).toEqual([
      chunk([{ index: 0, text: "4 ", logprobs: null, finish_reason: null }]),
      chunk([{ index: 1, text: 'say "1"\n', logprobs: null, finish_reason: null }]),
    ]);

    out.delta(0, "1");
    out.finish(0, "stop");
    out.finish(1, "length");
    const usage = { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 };
    out.end(usage);
    await nextTick();
    expect(writes).toHaveLength(1); // nothing written apart from the end
    expect(events(ended()!)).toEqual([
      chunk([{ index: 0, text: "1", logprobs: null, finish_reason: null }]),
      chunk([{ index: 0, text: "", logprobs: null, finish_reason: "stop" }]),
      chunk([{ index: 1, text: "", logprobs: null, finish_reason: "length" }]),
      JSON.stringify({ id: "cmpl-1", object: "text_completion", created: 1700000000, model: "reverse", choices: [], usage }),
      "[DONE]",
    ]);
  });

  it("writes chat chunks: the assistant's role first, content deltas, an empty delta with the finish; no usage unless given", async () => {
    const { res, writes, ended } = recorder();
    const out = sseStream(res, { kind: "chat", ...base, choices: 1 });
    out.delta(0, "9");
    await nextTick();
    out.finish(0, "stop");
    out.end();
    const chunk = (choice: object) => JSON.stringify({ id: "cmpl-1", object: "chat.completion.chunk", created: 1700000000, model: "reverse", choices: [{ index: 0, ...choice }] });
    expect(events(writes.join("") + ended())).toEqual([
      chunk({ delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }),
      chunk({ delta: { content: "9" }, logprobs: null, finish_reason: null }),
      chunk({ delta: {}, logprobs: null, finish_reason: "stop" }),
      "[DONE]",
    ]);
  });

  it("an error is the last event, after the chunks still pending, and ends the response", () => {
    const { res, writes, ended } = recorder();
    const out = sseStream(res, { kind: "completion", ...base, choices: 1 });
    out.delta(0, "3");
    out.error({ error: { message: "the client went away", type: "timeout", param: null, code: "request_timeout" } });
    expect(writes).toEqual([]);
    expect(events(ended()!)).toEqual([
      JSON.stringify({ id: "cmpl-1", object: "text_completion", created: 1700000000, model: "reverse", choices: [{ index: 0, text: "3", logprobs: null, finish_reason: null }] }),
      JSON.stringify({ error: { message: "the client went away", type: "timeout", param: null, code: "request_timeout" } }),
    ]);
  });
});
