/**
 * The teacher: the same frozen model with the long hard prompt before each input. It continues each
 * input once (greedy, or `samples` seeded draws at temperature 1), then one teacher-forced pass over
 * prompt + input + continuation gives its next-token distribution at every continuation position —
 * where the student, with its soft prompt instead of the hard one, is trained to match it.
 *
 * Distributions are kept as the top k log-probabilities and the log of the rest's mass (see kl.ts):
 * a full distribution is vocabulary-sized per position (50k floats for GPT-2: 200 KB, times every
 * position of every continuation), while a peaked teacher puts nearly all its mass in a few tokens.
 * With a vocabulary no larger than k (the tiny example model's 17 tokens) they are kept whole and the
 * KL is exact. With `hidden`, the same pass also keeps the teacher's final hidden state (after the final
 * norm) at each position: hidden-size floats a position, for the hidden-state term (--hidden-weight).
 */
import * as o from "../graph/ops.js";
import type { CausalLM } from "../models/causal-lm.js";
import { type Tokenizer, paddingId } from "../tokenizer/index.js";
import { IGNORE_INDEX, makeBatches, type TokenizedExample } from "../data/index.js";
import { generate, idsOnly } from "../infer/generate.js";
import { Program } from "../runtime/session.js";
import { forwardGraph, lossFeeds } from "../objective/lm.js";

export interface TeacherSettings {
  /** 0: one greedy continuation per input; N ≥ 1: N continuations sampled at temperature 1 (input i, draw j seeded with seed + i·N + j). */
  samples: number;
  /** Longest continuation, its EOS included. */
  maxNewTokens: number;
  /** Teacher tokens kept per position; the whole distribution when the vocabulary has no more. */
  topK: number;
  seed: number;
  /** Keep the final hidden states too; left out (not false) when not, so caches made before it stay valid. */
  hidden?: true;
}

/** One continuation of one input, with the teacher's distribution at each of its positions. */
export interface TeacherRow {
  /** The input alone, as the student sees it (after its virtual tokens). */
  input: number[];
  /** What the teacher generated after prompt + input (its EOS last when it stopped on one). */
  continuation: number[];
  /** [n, k]: at the position predicting continuation token j, the teacher's k most likely tokens, most likely first. */
  topIndices: Int32Array;
  /** [n, k]: their log-probabilities. */
  topLogp: Float32Array;
  /** [n]: the log of the mass outside the top k (empty when k covers the vocabulary). */
  restLogp: Float32Array;
  /** [n, hidden]: the teacher's final hidden state (after the final norm) at those positions, kept with `hidden`. */
  hidden?: Float32Array;
}

export interface TeacherTargets {
  /** Tokens kept per position: min(topK, vocabulary). */
  k: number;
  vocabSize: number;
  rows: TeacherRow[];
}

/** How much teacher work a call did: continuations generated, teacher-forced forward passes (batches) run. */
export interface TeacherWork {
  generated: number;
  forwardPasses: number;
}

/** A floor for the rest's log mass: exp of it stays a normal float32, so p·log p never meets 0·(−∞). */
const MIN_REST_LOGP = -80;

/**
 * The teacher's continuations and distributions for `inputs` (each input's ids as the student sees it
 * and as the teacher does: the hard prompt's text before the input's, tokenized together as `eval
 * --compare-text` does), and how much work that took.
 */
export async function teacherTargets(
  lm: CausalLM,
  tokenizer: Tokenizer,
  inputs: readonly { student: number[]; teacher: number[] }[],
  settings: TeacherSettings,
  batchSize = 8,
): Promise<{ targets: TeacherTargets; work: TeacherWork }> {
  const draws = settings.samples === 0 ? 1 : settings.samples;
  const requests = inputs.flatMap((input, i) =>
    Array.from({ length: draws }, (_, j) => ({
      inputIds: input.teacher,
      maxNewTokens: settings.maxNewTokens,
      ...(settings.samples === 0 ? {} : { temperature: 1, seed: settings.seed + i * draws + j }),
    })),
  );
  const continuations = (await generate(lm, undefined, requests, idsOnly(tokenizer))).map((g) => g.ids);
  const k = Math.min(settings.topK, lm.config.vocabSize);
  const rows: TeacherRow[] = [];
  let forwardPasses = 0;
  const program = await scoringProgram(lm);
  const pairs = continuations.map((continuation, r) => ({ input: inputs[Math.floor(r / draws)], continuation }));
  for (let first = 0; first < pairs.length; first += batchSize) {
    const chunk = pairs.slice(first, first + batchSize);
    const items: TokenizedExample[] = chunk.map(({ input, continuation }) => ({
      inputIds: [...input.teacher, ...continuation],
      labels: [...input.teacher.map(() => IGNORE_INDEX), ...continuation],
    }));
    // Right-padded and in order: the scored positions come row by row, each row's continuation in order.
    const [batch] = makeBatches(items, { batchSize: items.length, padTokenId: paddingId(tokenizer), padSide: "right" });
    const out = await program.run({ ...lm.weights.feeds(), ...lossFeeds(batch, 0) });
    forwardPasses++;
    const logp = out.logp.data as Float32Array;
    const d = lm.config.hiddenSize;
    let at = 0;
    for (const { input, continuation } of chunk) {
      const n = continuation.length;
      const row: TeacherRow = { input: input.student, continuation, topIndices: new Int32Array(n * k), topLogp: new Float32Array(n * k), restLogp: new Float32Array(k < lm.config.vocabSize ? n : 0) };
      if (settings.hidden) row.hidden = (out.hidden.data as Float32Array).slice(at * d, (at + n) * d);
      for (let j = 0; j < n; j++, at++) keepTop(logp.subarray(at * lm.config.vocabSize, (at + 1) * lm.config.vocabSize), k, row, j);
      rows.push(row);
    }
  }
  return { targets: { k, vocabSize: lm.config.vocabSize, rows }, work: { generated: continuations.length, forwardPasses } };
}

const scoringPrograms = new WeakMap<CausalLM, Promise<Program>>();

/** The bare model's log-probabilities [M, V] and final hidden states [M, d] at the labelled positions of a batch (fed by `lossFeeds`). */
function scoringProgram(lm: CausalLM): Promise<Program> {
  let program = scoringPrograms.get(lm);
  if (program === undefined) {
    const f = forwardGraph(lm);
    program = Program.compile({ logp: o.logSoftmax(lm.lmHead(f.picked), -1), hidden: f.picked, count: f.count });
    scoringPrograms.set(lm, program);
  }
  return program;
}

/** Row j of `row`: the k largest of `logp` (most likely first) and, when k < V, the log of the others' mass. */
function keepTop(logp: Float32Array, k: number, row: TeacherRow, j: number): void {
  const top = topIndices(logp, k);
  top.forEach((id, i) => {
    row.topIndices[j * k + i] = id;
    row.topLogp[j * k + i] = logp[id];
  });
  if (k === logp.length) return;
  const inTop = new Uint8Array(logp.length);
  for (const id of top) inTop[id] = 1;
  let rest = 0; // summed directly in float64: 1 − Σ top would cancel to noise when the rest is small
  for (let v = 0; v < logp.length; v++) if (inTop[v] === 0) rest += Math.exp(logp[v]);
  row.restLogp[j] = Math.max(MIN_REST_LOGP, Math.log(rest));
}

/** The indices of the k largest values, largest first (ties: the lower index first), by a min-heap of k. */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  const heap: number[] = []; // indices; heap[0] is the smallest kept value
  const less = (a: number, b: number) => values[a] < values[b] || (values[a] === values[b] && a > b);
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && less(heap[l], heap[m])) m = l;
      if (r < heap.length && less(heap[r], heap[m])) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m], heap[i]];
      i = m;
    }
  };
  for (let v = 0; v < values.length; v++) {
    if (heap.length < k) {
      heap.push(v);
      for (let i = heap.length - 1; i > 0 && less(heap[i], heap[(i - 1) >> 1]); i = (i - 1) >> 1) [heap[i], heap[(i - 1) >> 1]] = [heap[(i - 1) >> 1], heap[i]];
    } else if (k > 0 && less(heap[0], v)) {
      heap[0] = v;
      down(0);
    }
  }
  return heap.sort((a, b) => (less(a, b) ? 1 : -1));
}
