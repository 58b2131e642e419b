/**
 * Looking inside learned prompts: which vocabulary tokens each vector is closest to (cosine
 * similarity, as in Lester et al. §7), how long it is next to the vocabulary, and how alike
 * two prompts are.
 */
import { fail } from "../util/errors.js";
import type { WeightTensor } from "../models/causal-lm.js";

export interface NearestToken {
  id: number;
  token: string;
  cosine: number;
}

export interface VectorReport {
  index: number;
  norm: number;
  /** norm / mean norm of the vocabulary's embeddings. */
  relativeNorm: number;
  nearest: NearestToken[];
  /** For a prompt started from a text: the token it started as and how far it has moved from it. */
  start?: StartReport;
}

/** How far a vector has moved from the token embedding it started as (`--init text`): the refinement of a hard prompt into a learned one. */
export interface StartReport {
  id: number;
  token: string;
  /** Euclidean distance from the starting embedding. */
  distance: number;
  /** distance / the starting embedding's norm (0: unchanged; 1: moved as far as it was long). */
  relativeDistance: number;
  /** Cosine with the starting embedding. */
  cosine: number;
  /** Whether the starting token is still the nearest token. */
  stillNearest: boolean;
}

/**
 * The token each vector started as, for a prompt initialised from a text (PEFT's prompt_tuning_init
 * "TEXT"): the text's tokens repeated to fill the prompt, as PEFT and `--init text` start it.
 */
export function textStartIds(textIds: readonly number[], numVirtual: number): number[] {
  if (textIds.length === 0) fail("adapter", "the adapter's prompt_tuning_init_text has no tokens for this tokenizer", { field: "prompt_tuning_init_text" });
  return Array.from({ length: numVirtual }, (_, i) => textIds[i % textIds.length]);
}

/** Each vector's report with where it started (`startIds[i]`'s embedding) and how far it moved. */
export function withStarts(reports: readonly VectorReport[], prompt: Float32Array, embeddings: WeightTensor, startIds: readonly number[], idToToken: (id: number) => string | undefined): VectorReport[] {
  const d = embeddings.shape[1];
  return reports.map((r, i) => {
    const x = prompt.subarray(i * d, (i + 1) * d);
    const s = embeddings.data.subarray(startIds[i] * d, (startIds[i] + 1) * d);
    let squared = 0;
    for (let k = 0; k < d; k++) squared += (x[k] - s[k]) ** 2;
    const distance = Math.sqrt(squared);
    const start = { id: startIds[i], token: idToToken(startIds[i]) ?? `<${startIds[i]}>`, distance, relativeDistance: distance / (norm(s) || 1), cosine: dot(x, s) / (norm(x) * norm(s) || 1), stillNearest: r.nearest[0]?.id === startIds[i] };
    return { ...r, start };
  });
}

export function inspectPrompt(
  prompt: Float32Array,
  embeddings: WeightTensor,
  idToToken: (id: number) => string | undefined,
  k = 5,
): VectorReport[] {
  const [vocab, d] = embeddings.shape;
  if (prompt.length % d !== 0) fail("adapter", `prompt of ${prompt.length} values is not a whole number of ${d}-wide vectors`);
  const table = embeddings.data;
  const norms = new Float64Array(vocab);
  let meanNorm = 0;
  for (let v = 0; v < vocab; v++) {
    norms[v] = norm(table.subarray(v * d, (v + 1) * d));
    meanNorm += norms[v] / vocab;
  }
  const reports: VectorReport[] = [];
  for (let i = 0; i < prompt.length / d; i++) {
    const x = prompt.subarray(i * d, (i + 1) * d);
    const xn = norm(x);
    const scored: NearestToken[] = [];
    for (let v = 0; v < vocab; v++) {
      const cosine = dot(x, table.subarray(v * d, (v + 1) * d)) / (xn * norms[v] || 1);
      if (scored.length < k || cosine > scored[scored.length - 1].cosine) {
        scored.push({ id: v, token: idToToken(v) ?? `<${v}>`, cosine });
        scored.sort((a, b) => b.cosine - a.cosine);
        if (scored.length > k) scored.pop();
      }
    }
    reports.push({ index: i, norm: xn, relativeNorm: xn / meanNorm, nearest: scored });
  }
  return reports;
}

export interface PromptSimilarity {
  /** Cosine of the two prompts as flat vectors (same length required). */
  flat: number | null;
  /** Mean over a's vectors of the best cosine with any of b's vectors (order-free, lengths may differ). */
  meanBestMatch: number;
}

export function promptSimilarity(a: Float32Array, b: Float32Array, d: number): PromptSimilarity {
  if (a.length % d !== 0 || b.length % d !== 0) fail("adapter", `prompts must be whole numbers of ${d}-wide vectors`);
  const flat = a.length === b.length ? dot(a, b) / (norm(a) * norm(b) || 1) : null;
  let total = 0;
  const na = a.length / d;
  for (let i = 0; i < na; i++) {
    const x = a.subarray(i * d, (i + 1) * d);
    let best = -1;
    for (let j = 0; j < b.length / d; j++) {
      const y = b.subarray(j * d, (j + 1) * d);
      best = Math.max(best, dot(x, y) / (norm(x) * norm(y) || 1));
    }
    total += best;
  }
  return { flat, meanBestMatch: total / na };
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function norm(a: Float32Array): number {
  return Math.sqrt(dot(a, a));
}
