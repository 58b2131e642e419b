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
