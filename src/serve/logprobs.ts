/**
 * Token log-probabilities in OpenAI's two shapes: completions' `{tokens, token_logprobs, top_logprobs,
 * text_offset}` and chat's `{content: [{token, logprob, bytes, top_logprobs}]}`. A choice reports the tokens
 * whose text starts inside its answer (an EOS, and tokens after a stop string's cut, have none), and a
 * streamed chunk the tokens whose text starts inside what has been sent so far, so the chunks' entries add
 * up to the whole answer's. Offsets count characters from the start of the completion, as vLLM's do.
 * A token's text is what it adds to the decoded answer (a word-level decoder's space included), so the
 * tokens join to the answer; an alternative's, what it would have added after the last few tokens.
 */
import type { TokenLogprob } from "../infer/sampling.js";
import type { Tokenizer } from "../tokenizer/index.js";

/** A token's log-probability, its text and the character that starts at, and its alternatives' texts. */
export interface LogprobEntry {
  logprob: TokenLogprob;
  text: string;
  offset: number;
  /** Per `logprob.top`, the text that token would have added. */
  topTexts: string[];
}

/** Tokens before an alternative that its text is decoded after: enough for a decoder's spacing and merges. */
const CONTEXT_TOKENS = 4;

/** One choice's tokens as they come, each with the offset its text starts at; `take` hands them out once. */
export class LogprobTrack {
  private readonly ids: number[] = [];
  private readonly entries: LogprobEntry[] = [];
  private decodedLength = 0;
  private taken = 0;

  constructor(private readonly tokenizer: Tokenizer) {}

  push(logprob: TokenLogprob): void {
    const context = this.ids.slice(-CONTEXT_TOKENS);
    const contextText = this.tokenizer.decode(context);
    const topTexts = logprob.top.map((t) => this.tokenizer.decode([...context, t.token]).slice(contextText.length));
    const offset = this.decodedLength;
    this.ids.push(logprob.token);
    const decoded = this.tokenizer.decode(this.ids);
    this.decodedLength = decoded.length;
    this.entries.push({ logprob, text: decoded.slice(offset), offset, topTexts });
  }

  /** The entries not yet taken whose text starts before character `end` of the answer. */
  take(end: number): LogprobEntry[] {
    const from = this.taken;
    while (this.taken < this.entries.length && this.entries[this.taken].offset < end) this.taken++;
    return this.entries.slice(from, this.taken);
  }
}

/** Completions: the sampled token's log-probability, and per position the `top` most likely plus the sampled one (as OpenAI: up to logprobs + 1). */
export function completionLogprobs(entries: readonly LogprobEntry[]) {
  return {
    tokens: entries.map((e) => e.text),
    token_logprobs: entries.map((e) => e.logprob.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries([...e.logprob.top.map((t, i) => [e.topTexts[i], t.logprob]), [e.text, e.logprob.logprob]])),
    text_offset: entries.map((e) => e.offset),
  };
}

/** Chat: per token its text, log-probability, UTF-8 bytes and the `top_logprobs` most likely tokens'. */
export function chatLogprobs(entries: readonly LogprobEntry[]) {
  const described = (token: string, logprob: number) => ({ token, logprob, bytes: [...Buffer.from(token, "utf8")] });
  return {
    content: entries.map((e) => ({ ...described(e.text, e.logprob.logprob), top_logprobs: e.logprob.top.map((t, i) => described(t.token === e.logprob.token ? e.text : e.topTexts[i], t.logprob)) })),
    refusal: null,
  };
}
