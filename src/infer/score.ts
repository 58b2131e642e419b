/**
 * Log-likelihood of given completions after given inputs, optionally after a soft prompt: one batched
 * forward over the left-padded rows (input then completion), the prompts entering as their cached past.
 * Classification by choices scores each choice as a completion and picks the highest total.
 * Positions follow layout.ts (default: each row as if alone).
 */
import { fail } from "../util/errors.js";
import * as o from "../graph/ops.js";
import type { Value } from "../graph/ir.js";
import type { CausalLM } from "../models/causal-lm.js";
import { attentionPattern } from "../models/inputs.js";
import { type PromptCache, type PromptState, type AdapterPrompt, batchPast, checkSoftPrompt, isPrefixPrompt, promptCacheFor } from "./kv-cache.js";
import { type PositionMode, checkIds, checkPositions, layoutBatch } from "./layout.js";
import { pastInputs, programFor } from "./step.js";
import { LoraBatcher, batchedLoraHooks, isLoraPrompt } from "./lora.js";
import type { ForwardHooks } from "../models/causal-lm.js";

export interface ScoreRequest {
  /** The context; may be empty only after a soft prompt (its last virtual token predicts the first completion token). */
  inputIds: readonly number[];
  /** The tokens to score, at least one. */
  completionIds: readonly number[];
  prompt?: AdapterPrompt;
}

export interface ScoreOptions {
  /** Default "row": see layout.ts. */
  positions?: PositionMode;
  promptCache?: PromptCache;
  /** Filler for padding (never attended to); default 0. */
  padTokenId?: number;
}

export interface CompletionScore {
  /** Σ log p(completion token | everything before it), natural log. */
  logLikelihood: number;
  /** logLikelihood / number of completion tokens. */
  meanLogLikelihood: number;
  /** Per completion token, its log-probability. */
  tokenLogProbs: number[];
}

export async function scoreCompletions(lm: CausalLM, requests: readonly ScoreRequest[], options: ScoreOptions = {}): Promise<CompletionScore[]> {
  if (requests.length === 0) return [];
  const cache = options.promptCache ?? promptCacheFor(lm);
  if (cache.lm !== lm) fail("usage", "the prompt cache belongs to another model", { field: "promptCache" });
  requests.forEach((r, i) => checkScoreRequest(lm, r, i));
  const prompts = await Promise.all(requests.map((r) => (r.prompt === undefined ? undefined : cache.get(r.prompt))));
  const rows = requests.map((r, b) => ({ ids: [...r.inputIds, ...r.completionIds], numVirtual: prompts[b]?.numVirtual ?? 0 }));
  const layout = layoutBatch(rows, options.positions ?? "row", options.padTokenId ?? 0);
  layout.nextPosition.forEach((p, b) => checkPositions(lm, p - 1, `requests[${b}]`));

  // Each completion token is predicted by the column before it; the first one after an empty input by the prompt.
  const L = layout.width;
  const at: number[] = [];
  const targets: number[] = [];
  const scores = requests.map((r) => ({ logLikelihood: 0, meanLogLikelihood: 0, tokenLogProbs: new Array<number>(r.completionIds.length) }));
  const fromGraph: [row: number, token: number][] = [];
  requests.forEach((r, b) => {
    r.completionIds.forEach((target, j) => {
      const before = r.inputIds.length + j - 1; // index in the row of the predicting token
      if (before < 0) scores[b].tokenLogProbs[j] = logSoftmaxAt(prompts[b]!.lastLogits!, target); // an embedding prompt's (checked)
      else {
        at.push(b * L + layout.padding[b] + before);
        targets.push(target);
        fromGraph.push([b, j]);
      }
    });
  });

  if (at.length > 0) {
    const withPrompts = layout.pastLength > 0;
    const kind = withPrompts ? "score-after-past" : "score";
    const lora = new LoraBatcher(lm).batch(prompts.map((p) => p?.lora)); // rows with a LoRA adapter: its factors per row
    const program = await programFor(lm, lora ? `${kind}+${lora.key}` : kind, () => scoreGraph(lm, withPrompts, lora && batchedLoraHooks(lora.modules)));
    const out = await program.run({
      ...lm.weights.feeds(),
      ...lora?.feeds,
      ...(withPrompts ? batchPast(lm, prompts as (PromptState | undefined)[], layout.pastLength) : {}),
      input_ids: layout.inputIds,
      position_ids: layout.positions,
      allowed: attentionPattern(layout.keyMask, L),
      label_positions: { data: BigInt64Array.from(at, BigInt), dims: [at.length] },
      label_targets: { data: BigInt64Array.from(targets, BigInt), dims: [targets.length] },
    });
    const logp = out.token_logprobs.data as Float32Array;
    fromGraph.forEach(([b, j], k) => (scores[b].tokenLogProbs[j] = logp[k]));
  }
  for (const s of scores) {
    s.logLikelihood = s.tokenLogProbs.reduce((x, y) => x + y, 0);
    s.meanLogLikelihood = s.logLikelihood / s.tokenLogProbs.length;
  }
  return scores;
}

export interface ChoiceRequest {
  inputIds: readonly number[];
  /** Each choice as token ids (e.g. the tokens of " positive", " negative"). */
  choices: readonly (readonly number[])[];
  prompt?: AdapterPrompt;
}

/** Score every choice after the input in one batch; `best` has the highest total log-likelihood (first wins ties). */
export async function scoreChoices(lm: CausalLM, request: ChoiceRequest, options: ScoreOptions = {}): Promise<{ best: number; scores: CompletionScore[] }> {
  if (request.choices.length === 0) fail("usage", "give at least one choice", { field: "choices" });
  const scores = await scoreCompletions(
    lm,
    request.choices.map((completionIds) => ({ inputIds: request.inputIds, completionIds, prompt: request.prompt })),
    options,
  );
  let best = 0;
  scores.forEach((s, i) => {
    if (s.logLikelihood > scores[best].logLikelihood) best = i;
  });
  return { best, scores };
}

/** log p(target) at the given flattened positions: only those rows go through the LM head. */
function scoreGraph(lm: CausalLM, withPast: boolean, hooks?: ForwardHooks): Record<string, Value> {
  const ids = o.input("input_ids", "int64", ["batch", "seq"]);
  const positions = o.input("position_ids", "int64", ["batch", "seq"]);
  const past = withPast ? pastInputs(lm) : undefined;
  const allowed = o.input("allowed", "bool", ["batch", 1, "seq", withPast ? "past+seq" : "seq"]);
  const at = o.input("label_positions", "int64", ["labels"]);
  const targets = o.input("label_targets", "int64", ["labels"]);
  const { hidden } = lm.forward({ inputsEmbeds: lm.embed(ids), positions, allowed, past, hooks });
  const picked = o.gather(o.reshape(hidden, [-1, lm.config.hiddenSize]), at, 0); // [M, d]
  const logp = o.logSoftmax(lm.lmHead(picked), -1); // [M, V]
  return { token_logprobs: o.squeeze(o.gatherElements(logp, o.unsqueeze(targets, [1]), 1), [1]) };
}

/** log softmax(logits)[target] in float64. */
function logSoftmaxAt(logits: Float32Array, target: number): number {
  let max = -Infinity;
  for (const x of logits) max = Math.max(max, x);
  let sum = 0;
  for (const x of logits) sum += Math.exp(x - max);
  return logits[target] - max - Math.log(sum);
}

function checkScoreRequest(lm: CausalLM, r: ScoreRequest, i: number): void {
  const field = (f: string) => `requests[${i}].${f}`;
  if (!Array.isArray(r.inputIds) || !Array.isArray(r.completionIds)) fail("usage", "inputIds and completionIds must be arrays of token ids", { field: field("inputIds") });
  if (r.completionIds.length === 0) fail("usage", "the completion is empty: give at least one token to score", { field: field("completionIds") });
  if (r.inputIds.length === 0 && r.prompt === undefined) {
    fail("usage", "the input is empty: without a soft prompt nothing predicts the first completion token", { field: field("inputIds") });
  }
  if (r.inputIds.length === 0 && r.prompt !== undefined && isPrefixPrompt(r.prompt)) {
    fail("usage", `the input is empty: a prefix ("${r.prompt.id}") is keys/values with no logits after it, so nothing predicts the first completion token; give at least one input token`, { field: field("inputIds") });
  }
  if (r.inputIds.length === 0 && r.prompt !== undefined && isLoraPrompt(r.prompt)) {
    fail("usage", `the input is empty: a LoRA adapter ("${r.prompt.id}") puts nothing before the input, so nothing predicts the first completion token; give at least one input token`, { field: field("inputIds") });
  }
  checkIds(lm, r.inputIds, field("inputIds"));
  checkIds(lm, r.completionIds, field("completionIds"));
  if (r.prompt !== undefined) checkSoftPrompt(lm, r.prompt, field("prompt"));
}
