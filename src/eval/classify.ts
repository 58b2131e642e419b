/**
 * Classification by verbalizers: each label has one or more words, and a row is classified by how likely
 * the model (with a prompt, or without) makes each label's words right after the row's input. A word's
 * score is its mean log-probability per token (length-normalised, so a many-token word is not penalised for
 * its length); a label's score is the best of its words'. Contextual calibration (Zhao et al. 2021,
 * "Calibrate Before Use") divides each label's probability by the one it gets for a content-free input
 * ("N/A", "" and "[MASK]", averaged as theirs), which is subtracting its log from the label's score.
 */
import { fail } from "../util/errors.js";
import { isPlainObject, readJsonFile } from "../formats/json.js";
import type { CausalLM } from "../models/causal-lm.js";
import type { DataTokenizer, Example } from "../data/index.js";
import { rowSignals } from "../data/index.js";
import type { AdapterPrompt } from "../infer/generate.js";
import { scoreCompletions } from "../infer/score.js";
import { softmax } from "../infer/sampling.js";

/** label → its words, in the file's order. */
export type Verbalizer = ReadonlyMap<string, readonly string[]>;

/** Zhao et al.'s content-free inputs. */
export const CONTENT_FREE = ["N/A", "", "[MASK]"] as const;

/** A verbalizer file: a JSON object mapping each label to a word or a list of words. */
export async function readVerbalizer(path: string): Promise<Verbalizer> {
  return parseVerbalizer(await readJsonFile(path, "data", { expected: 'a JSON object mapping each label to its words, e.g. {"positive": ["good", "great"]}' }), path);
}

export function parseVerbalizer(value: unknown, file: string): Verbalizer {
  if (!isPlainObject(value)) fail("data", 'expected a JSON object mapping each label to its words, e.g. {"positive": ["good", "great"]}', { file });
  const labels = Object.entries(value);
  if (labels.length < 2) fail("data", `expected at least two labels, got ${labels.length}`, { file });
  return new Map(labels.map(([label, words]) => {
    const list = typeof words === "string" ? [words] : words;
    if (!Array.isArray(list) || list.length === 0) fail("data", "the label has no verbalizer words; expected a word or a non-empty list of words", { file, field: label });
    list.forEach((w, i) => {
      if (typeof w !== "string" || w === "") fail("data", `expected a word (a non-empty string), got ${JSON.stringify(w)}`, { file, field: `${label}[${i}]` });
    });
    return [label, list as string[]];
  }));
}

/** Each word's tokens (a word that tokenizes to nothing fails, naming it); the same order as the verbalizer. */
export function verbalizerTokens(verbalizer: Verbalizer, tokenizer: DataTokenizer, file: string): number[][][] {
  return [...verbalizer].map(([label, words]) =>
    words.map((word, i) => {
      const ids = tokenizer.encode(word, { addSpecialTokens: false });
      if (ids.length === 0) fail("data", `the word ${JSON.stringify(word)} tokenizes to nothing; give a word the tokenizer can encode`, { file, field: `${label}[${i}]` });
      return ids;
    }),
  );
}

export interface LabelCounts {
  examples: number;
  correct: number;
  /** null for a label no row has. */
  accuracy: number | null;
}

export interface Classification {
  accuracy: number;
  perLabel: Record<string, LabelCounts>;
  /** confusion[true label][predicted label]: how many rows. */
  confusion: Record<string, Record<string, number>>;
  /** Each row's predicted label, in the data's order. */
  predictions: string[];
}

export interface ClassifyReport {
  examples: number;
  labels: string[];
  uncalibrated: Classification;
  /** With calibration: the same scores less the content-free inputs' log-probabilities. */
  calibrated?: Classification & { contentFree: Record<string, number> };
}

export interface ClassifyOptions {
  /** Where the verbalizer came from, for errors. */
  verbalizerFile: string;
  prompt?: AdapterPrompt;
  calibrate?: boolean;
  /** Requests per scoring forward (default 64). */
  batchSize?: number;
}

/** Classify `examples` (each with a "label" and a prompt or text) by the verbalizer's words. */
export async function classify(lm: CausalLM, tokenizer: DataTokenizer, examples: readonly Example[], verbalizer: Verbalizer, options: ClassifyOptions): Promise<ClassifyReport> {
  if (examples.length === 0) fail("data", "the classification set is empty");
  const labels = [...verbalizer.keys()];
  const words = verbalizerTokens(verbalizer, tokenizer, options.verbalizerFile);
  const truth = examples.map((ex) => {
    const label = rowSignals(ex.fields, ex.source).label;
    if (label === undefined || !verbalizer.has(label)) {
      fail("data", label === undefined ? 'has no "label"; classification rows are {"prompt" or "text", "label"}' : `the label ${JSON.stringify(label)} is not in the verbalizer (${labels.map((l) => JSON.stringify(l)).join(", ")})`, { ...ex.source, field: "label" });
    }
    return label;
  });
  const inputs = examples.map((ex) => inputText(ex));
  const scores = await labelScores(lm, tokenizer, inputs, words, options);
  const uncalibrated = tally(labels, truth, scores);
  if (!options.calibrate) return { examples: examples.length, labels, uncalibrated };
  // p_cf: the label distribution for content-free inputs, averaged over them (Zhao et al. §5).
  // An empty input has nothing to predict the first word from unless a prompt or a BOS token comes before it.
  const freeInputs = CONTENT_FREE.filter((text) => text !== "" || options.prompt !== undefined || tokenizer.specialPrefixIds.length > 0);
  const free = (await labelScores(lm, tokenizer, freeInputs, words, options)).map((row) => softmax(Float32Array.from(row)));
  const contentFree = labels.map((_, j) => free.reduce((s, p) => s + p[j], 0) / free.length);
  const calibrated = tally(labels, truth, calibrate(scores, contentFree));
  return { examples: examples.length, labels, uncalibrated, calibrated: { ...calibrated, contentFree: Object.fromEntries(labels.map((l, j) => [l, contentFree[j]])) } };
}

/** Zhao et al.'s calibration in log space: softmax(s) / p_cf renormalised has the argmax of s − log p_cf. */
export function calibrate(scores: readonly number[][], contentFree: readonly number[]): number[][] {
  return scores.map((row) => row.map((s, j) => s - Math.log(contentFree[j])));
}

function inputText(ex: Example): string {
  if (ex.kind === "text") return ex.text;
  if (ex.kind === "prompt") return ex.prompt;
  return fail("data", 'a classification row is {"prompt" or "text", "label"}, not a chat', { ...ex.source, field: "messages" });
}

/** [rows][labels]: each label's best word score (mean token log-probability) after each input. */
async function labelScores(lm: CausalLM, tokenizer: DataTokenizer, inputs: readonly string[], words: number[][][], options: ClassifyOptions): Promise<number[][]> {
  const flat = words.flatMap((ws, label) => ws.map((ids) => ({ label, ids })));
  const requests = inputs.flatMap((text) => {
    const inputIds = [...tokenizer.specialPrefixIds, ...tokenizer.encode(text, { addSpecialTokens: false })];
    return flat.map(({ ids }) => ({ inputIds, completionIds: ids, prompt: options.prompt }));
  });
  const size = options.batchSize ?? 64;
  const means: number[] = [];
  for (let first = 0; first < requests.length; first += size) {
    for (const s of await scoreCompletions(lm, requests.slice(first, first + size))) means.push(s.meanLogLikelihood);
  }
  return inputs.map((_, r) => {
    const row = words.map(() => -Infinity);
    flat.forEach(({ label }, k) => (row[label] = Math.max(row[label], means[r * flat.length + k])));
    return row;
  });
}

function tally(labels: readonly string[], truth: readonly string[], scores: readonly number[][]): Classification {
  const confusion = Object.fromEntries(labels.map((t) => [t, Object.fromEntries(labels.map((p) => [p, 0]))]));
  const predictions = scores.map((row) => labels[row.indexOf(Math.max(...row))]);
  predictions.forEach((p, i) => confusion[truth[i]][p]++);
  const perLabel = Object.fromEntries(labels.map((l) => {
    const examples = truth.filter((t) => t === l).length;
    const correct = confusion[l][l];
    return [l, { examples, correct, accuracy: examples > 0 ? correct / examples : null }];
  }));
  const correct = predictions.filter((p, i) => p === truth[i]).length;
  return { accuracy: correct / truth.length, perLabel, confusion, predictions };
}
