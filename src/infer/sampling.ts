import { fail } from "../util/errors.js";
import type { Rng } from "../util/rng.js";

/**
 * Next-token choice from one row of logits, following HF transformers' generate():
 * repetition penalty → temperature → top-k → top-p, then a draw (or argmax when not sampling).
 * All functions are pure: the logits passed in are never modified.
 */

export interface SamplingOptions {
  /** 0 or undefined: greedy, as HF's do_sample=False. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 or undefined: off. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability sums to at least p; 1 or undefined: off. */
  topP?: number;
  /** Required when sampling. */
  rng?: Rng;
}

/**
 * HF RepetitionPenaltyLogitsProcessor (Keskar et al. 2019, CTRL): for every id already seen, once however
 * often it occurs, a positive logit is divided by `penalty` and a negative one multiplied by it.
 */
export function applyRepetitionPenalty(
  logits: Float32Array,
  previousIds: Iterable<number>,
  penalty: number,
): Float32Array {
  if (!(penalty > 0 && Number.isFinite(penalty))) {
    fail("usage", `repetition penalty must be a finite number > 0, got ${penalty}`, { field: "repetitionPenalty" });
  }
  const out = logits.slice();
  for (const id of new Set(previousIds)) {
    if (!Number.isInteger(id) || id < 0 || id >= logits.length) {
      fail("usage", `token id ${id} is outside the vocabulary (size ${logits.length})`, {
        op: "applyRepetitionPenalty",
      });
    }
    const score = logits[id];
    out[id] = score < 0 ? score * penalty : score / penalty;
  }
  return out;
}

/** Argmax; the first index wins ties, as torch.argmax. One pass that also finds a NaN or +Infinity (a step reads every row's logits). */
export function greedy(logits: Float32Array): number {
  if (logits.length === 0) fail("usage", "logits row is empty", { tensor: "logits" });
  let best = 0;
  let max = -Infinity;
  let nan = -1;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i];
    if (x > max) {
      max = x;
      best = i;
    } else if (x !== x && nan < 0) nan = i;
  }
  if (nan >= 0 || max === Infinity) checkRow(logits); // names the first bad logit
  if (max === -Infinity) fail("nonfinite", "every logit is -Infinity", { tensor: "logits" });
  return best;
}

/**
 * softmax(logits / temperature), computed as exp((x − max) / T) so neither large logits nor a tiny
 * temperature can overflow. −Infinity logits (masked tokens) get probability 0.
 */
export function softmax(logits: Float32Array, temperature = 1): Float64Array {
  const max = checkRow(logits);
  const probs = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    probs[i] = Math.exp((logits[i] - max) / temperature);
    sum += probs[i];
  }
  for (let i = 0; i < probs.length; i++) probs[i] /= sum;
  return probs;
}

/** Pick the next token id. Apply `applyRepetitionPenalty` first if wanted. */
export function sampleToken(logits: Float32Array, options: SamplingOptions = {}): number {
  const { temperature, topK, topP, rng } = options;
  if (temperature !== undefined && !(temperature >= 0 && Number.isFinite(temperature))) {
    fail("usage", `temperature must be a finite number >= 0, got ${temperature}`, { field: "temperature" });
  }
  if (topK !== undefined && !(Number.isInteger(topK) && topK >= 0)) {
    fail("usage", `topK must be an integer >= 0, got ${topK}`, { field: "topK" });
  }
  if (topP !== undefined && !(topP > 0 && topP <= 1)) {
    fail("usage", `topP must be in (0, 1], got ${topP}`, { field: "topP" });
  }
  if (temperature === undefined || temperature === 0) return greedy(logits);
  if (rng === undefined) fail("usage", "sampling with temperature > 0 needs an rng", { field: "rng" });

  const probs = softmax(topK ? maskAllButTopK(logits, topK) : logits, temperature);
  let candidates = Array.from(probs.keys()).filter((i) => probs[i] > 0);
  if (topP !== undefined && topP < 1) candidates = nucleus(candidates, probs, topP);

  let total = 0;
  for (const i of candidates) total += probs[i];
  let u = rng.next() * total;
  for (const i of candidates) {
    u -= probs[i];
    if (u < 0) return i;
  }
  return candidates[candidates.length - 1]; // u landed on the rounding error at the very end
}

/**
 * HF TopKLogitsWarper: everything below the k-th largest logit becomes −Infinity; ties with it stay.
 * k is capped at the vocabulary size.
 */
function maskAllButTopK(logits: Float32Array, k: number): Float32Array {
  if (k >= logits.length) return logits;
  const kth = Float32Array.from(logits).sort().reverse()[k - 1];
  return logits.map((x) => (x >= kth ? x : -Infinity));
}

/**
 * HF TopPLogitsWarper keeps, in descending probability, each token whose predecessors sum to less
 * than p (HF phrases it as dropping the ascending cumulative sum ≤ 1 − p), so the most likely token always stays.
 */
function nucleus(candidates: number[], probs: Float64Array, p: number): number[] {
  const sorted = candidates.sort((a, b) => probs[b] - probs[a] || a - b);
  let kept = 0;
  let cumulative = 0;
  while (kept < sorted.length && (kept === 0 || cumulative < p)) cumulative += probs[sorted[kept++]];
  return sorted.slice(0, kept);
}

/** A chosen token's log-probability and the most likely tokens' (the model's own distribution). */
export interface TokenLogprob {
  token: number;
  logprob: number;
  /** The most likely tokens, most likely first (ties: lower id first). */
  top: { token: number; logprob: number }[];
}

/**
 * log-softmax of the raw logits at `token`, and the `top` most likely tokens' — before repetition penalty,
 * temperature and top-k/p, so the numbers are the model's whatever the sampler did (vLLM's default too).
 */
export function tokenLogprob(logits: Float32Array, token: number, top: number): TokenLogprob {
  const max = checkRow(logits);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const logZ = max + Math.log(sum);
  // The `top` largest by one pass with a small sorted list: top is at most 20, the vocabulary tens of thousands.
  const best: number[] = [];
  for (let i = 0; i < logits.length && top > 0; i++) {
    if (best.length === top && logits[i] <= logits[best[top - 1]]) continue;
    let at = best.length;
    while (at > 0 && logits[best[at - 1]] < logits[i]) at--;
    best.splice(at, 0, i);
    if (best.length > top) best.pop();
  }
  return { token, logprob: logits[token] - logZ, top: best.map((i) => ({ token: i, logprob: logits[i] - logZ })) };
}

/** A row must be non-empty, free of NaN and +Infinity, and have some finite logit; returns its max. */
function checkRow(logits: Float32Array): number {
  if (logits.length === 0) fail("usage", "logits row is empty", { tensor: "logits" });
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i];
    if (Number.isNaN(x) || x === Infinity) fail("nonfinite", `logit ${i} is ${x}`, { tensor: "logits" });
    if (x > max) max = x;
  }
  if (max === -Infinity) fail("nonfinite", "every logit is -Infinity", { tensor: "logits" });
  return max;
}
