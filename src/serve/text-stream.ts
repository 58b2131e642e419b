/**
 * A row's text as it streams: after each token, the part of the decoded output that is final. Held
 * back: a tail that could still become a stop string (stop.ts's safeLength), and a trailing
 * replacement character (a multi-byte character whose other bytes are still to come). What is sent
 * is always a prefix of the row's final text, so the deltas add up to exactly the non-streamed answer.
 */
import { StopMatcher } from "../infer/stop.js";
import type { Generation } from "../infer/engine.js";
import type { Tokenizer } from "../tokenizer/index.js";

export class TextStream {
  private readonly ids: number[] = [];
  private readonly stop: StopMatcher | undefined;
  private sent = 0;

  constructor(
    private readonly tokenizer: Tokenizer,
    stop: readonly string[] | undefined,
  ) {
    this.stop = stop !== undefined && stop.length > 0 ? new StopMatcher([...stop]) : undefined;
  }

  /** The new final text after this token ("" when it must be held back). */
  push(token: number): string {
    this.ids.push(token);
    const text = this.tokenizer.decode(this.ids);
    let safe = this.stop?.check(text).safeLength ?? text.length;
    while (safe > this.sent && text.charCodeAt(safe - 1) === 0xfffd) safe--;
    if (safe <= this.sent) return "";
    const delta = text.slice(this.sent, safe);
    this.sent = safe;
    return delta;
  }

  /** The rest of the row's final text, once it is done. */
  finish(generation: Generation): string {
    const rest = (generation.text ?? "").slice(this.sent);
    this.sent += rest.length;
    return rest;
  }
}
