/**
 * What a request costs to prefill, measured (distillation's report, compare-prompts). Only the ids are
 * generated: no tokenizer decoding in the timed runs.
 */
import type { CausalLM } from "../models/causal-lm.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { generate, idsOnly, type AdapterPrompt } from "../infer/generate.js";

/**
 * Seconds to prefill one request: every request in one batch, generating one token (the first step is
 * the prefill); after a warm-up run (which compiles the programs and caches a soft prompt's keys/values,
 * computed once per prompt, not per request), the median of `repeats` runs over the request count.
 */
export async function prefillSecondsPerRequest(lm: CausalLM, tokenizer: Tokenizer, requests: readonly { inputIds: number[]; prompt?: AdapterPrompt }[], repeats = 5): Promise<number> {
  const run = () => generate(lm, undefined, requests.map((r) => ({ ...r, maxNewTokens: 1 })), idsOnly(tokenizer));
  await run();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const started = performance.now();
    await run();
    times.push((performance.now() - started) / 1000);
  }
  return times.sort((a, b) => a - b)[Math.floor(repeats / 2)] / requests.length;
}
