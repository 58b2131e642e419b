/**
 * What a dataset holds before anyone trains on it (`softprompt data check`): how many rows per answer
 * (label), rows that repeat exactly or up to case, spacing and punctuation, held-out rows whose input
 * is also in the training file, token lengths for a model and which rows it would truncate, and how
 * positives (rows to imitate) balance against negatives (`"negative": true` rows, the rejected side of
 * preference pairs), with the class weights that would even them out.
 */
import type { Example } from "./example.js";
import { tokenizeExample, type DataTokenizer } from "./tokenize.js";
import { rowSignals } from "./signals.js";

export interface LabelCount {
  label: string;
  count: number;
}

/** Rows that are the same example: `lines` are 1-based lines of the file (the first one kept, the rest repeats). */
export interface DuplicateGroup {
  lines: number[];
  text: string;
}

export interface Leak {
  trainLine: number;
  validLine: number;
  /** "exact": the same input; "near": the same up to case, spacing and punctuation. */
  kind: "exact" | "near";
  input: string;
}

export interface LengthReport {
  maxLength: number;
  min: number;
  median: number;
  p95: number;
  max: number;
  /** Rows longer than maxLength, longest first: training would cut them (prompts lose their start). */
  truncated: { line: number; tokens: number }[];
}

export interface Balance {
  positives: number;
  negatives: number;
  /** Preference rows ({"prompt","chosen","rejected"}), each one positive and one negative. */
  pairs: number;
  /** Per-row weights that make both sides weigh the same in the loss (n / (2 n_side)); null when a side is empty. */
  suggestedWeights: { positive: number; negative: number } | null;
}

export interface DataCheckReport {
  file: string;
  examples: number;
  kinds: Record<Example["kind"], number>;
  /** Distinct answers, most frequent first (prompt rows' completions, chats' last assistant turns). */
  labels: { distinct: number; top: LabelCount[] };
  duplicates: { exact: DuplicateGroup[]; near: DuplicateGroup[] };
  /** Same input, different answers: the data contradicts itself. */
  conflicts: DuplicateGroup[];
  leakage?: { valid: string; validExamples: number; leaks: Leak[] };
  lengths?: LengthReport;
  balance: Balance;
}

export interface DataCheckOptions {
  valid?: { file: string; examples: readonly Example[] };
  /** Token lengths need the model's tokenizer. */
  tokenizer?: DataTokenizer;
  maxLength?: number;
  /** How many labels to list (the rest are counted in `distinct`). */
  topLabels?: number;
}

export function checkData(file: string, examples: readonly Example[], options: DataCheckOptions = {}): DataCheckReport {
  const kinds = { prompt: 0, chat: 0, text: 0 };
  for (const ex of examples) kinds[ex.kind]++;
  const report: DataCheckReport = {
    file,
    examples: examples.length,
    kinds,
    labels: labelCounts(examples, options.topLabels ?? 10),
    duplicates: { exact: groupBy(examples, wholeText), near: nearOnly(examples) },
    conflicts: conflicts(examples),
    balance: balance(examples),
  };
  if (options.valid !== undefined) report.leakage = { valid: options.valid.file, validExamples: options.valid.examples.length, leaks: leaks(examples, options.valid.examples) };
  if (options.tokenizer !== undefined) report.lengths = lengths(examples, options.tokenizer, options.maxLength ?? 512);
  return report;
}

/** What the model is given: the prompt, or a chat's turns before its last answer, or the whole text. */
export function inputOf(ex: Example): string {
  switch (ex.kind) {
    case "prompt":
      return ex.prompt;
    case "chat":
      return ex.messages.slice(0, lastAnswerIndex(ex)).map((m) => `${m.role}: ${m.content}`).join("\n");
    case "text":
      return ex.text;
  }
}

/** What the model should answer; null for plain text. */
export function answerOf(ex: Example): string | null {
  if (ex.kind === "prompt") return ex.completion;
  if (ex.kind === "chat") return ex.messages[lastAnswerIndex(ex)].content;
  return null;
}

const lastAnswerIndex = (ex: Extract<Example, { kind: "chat" }>) => ex.messages.map((m) => m.role).lastIndexOf("assistant");

const wholeText = (ex: Example) => JSON.stringify([inputOf(ex), answerOf(ex)]);

/** Case-folded, punctuation dropped, spacing collapsed: what "near" means here. */
export function normalize(text: string): string {
  return text.toLowerCase().replace(/[\p{P}\p{S}]+/gu, " ").replace(/\s+/g, " ").trim();
}

const lineOf = (ex: Example, index: number) => ex.source?.line ?? index + 1;

/** Groups of two or more rows with the same key, in file order. */
function groupBy(examples: readonly Example[], key: (ex: Example) => string): DuplicateGroup[] {
  const groups = new Map<string, DuplicateGroup>();
  examples.forEach((ex, i) => {
    const k = key(ex);
    const group = groups.get(k) ?? { lines: [], text: inputOf(ex) };
    group.lines.push(lineOf(ex, i));
    groups.set(k, group);
  });
  return [...groups.values()].filter((g) => g.lines.length > 1);
}

/** Near duplicates that are not also exact ones (those are listed once, as exact). */
function nearOnly(examples: readonly Example[]): DuplicateGroup[] {
  const exactKey = new Map(examples.map((ex, i) => [lineOf(ex, i), wholeText(ex)]));
  return groupBy(examples, (ex) => JSON.stringify([normalize(inputOf(ex)), normalize(answerOf(ex) ?? "")])).filter(
    (g) => new Set(g.lines.map((l) => exactKey.get(l))).size > 1,
  );
}

function conflicts(examples: readonly Example[]): DuplicateGroup[] {
  const answers = new Map<string, Set<string>>();
  for (const ex of examples) {
    const answer = answerOf(ex);
    if (answer === null || isNegative(ex)) continue;
    const set = answers.get(inputOf(ex)) ?? new Set();
    answers.set(inputOf(ex), set.add(answer.trim()));
  }
  return groupBy(
    examples.filter((ex) => answerOf(ex) !== null && !isNegative(ex)),
    inputOf,
  ).filter((g) => (answers.get(g.text)?.size ?? 0) > 1);
}

function labelCounts(examples: readonly Example[], top: number): DataCheckReport["labels"] {
  const counts = new Map<string, number>();
  for (const ex of examples) {
    const answer = answerOf(ex);
    if (answer !== null) counts.set(answer.trim(), (counts.get(answer.trim()) ?? 0) + 1);
  }
  const sorted = [...counts].map(([label, count]) => ({ label, count })).sort((a, b) => b.count - a.count || a.label.localeCompare(b.label));
  return { distinct: counts.size, top: sorted.slice(0, top) };
}

function leaks(train: readonly Example[], valid: readonly Example[]): Leak[] {
  const exact = new Map<string, number>();
  const near = new Map<string, number>();
  train.forEach((ex, i) => {
    if (!exact.has(inputOf(ex))) exact.set(inputOf(ex), lineOf(ex, i));
    if (!near.has(normalize(inputOf(ex)))) near.set(normalize(inputOf(ex)), lineOf(ex, i));
  });
  const found: Leak[] = [];
  valid.forEach((ex, i) => {
    const input = inputOf(ex);
    const trainLine = exact.get(input) ?? near.get(normalize(input));
    if (trainLine !== undefined) found.push({ trainLine, validLine: lineOf(ex, i), kind: exact.has(input) ? "exact" : "near", input });
  });
  return found;
}

function lengths(examples: readonly Example[], tokenizer: DataTokenizer, maxLength: number): LengthReport {
  // Tokenized whole (no limit) so the report can say by how much each row is over.
  const sizes = examples.map((ex, i) => ({ line: lineOf(ex, i), tokens: tokenizeExample(ex, tokenizer, { maxLength: Number.MAX_SAFE_INTEGER }).inputIds.length }));
  const sorted = sizes.map((s) => s.tokens).sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return {
    maxLength,
    min: sorted[0],
    median: at(0.5),
    p95: at(0.95),
    max: sorted[sorted.length - 1],
    truncated: sizes.filter((s) => s.tokens > maxLength).sort((a, b) => b.tokens - a.tokens),
  };
}

// The signals as the objectives read them (a CSV's "true" included).
const isNegative = (ex: Example) => rowSignals(ex.fields).negative;
const isPair = (ex: Example) => rowSignals(ex.fields).pair !== undefined;

function balance(examples: readonly Example[]): Balance {
  const pairs = examples.filter(isPair).length;
  const negatives = examples.filter(isNegative).length + pairs;
  const positives = examples.length - examples.filter(isNegative).length;
  const n = positives + negatives;
  const suggestedWeights = positives > 0 && negatives > 0 ? { positive: n / (2 * positives), negative: n / (2 * negatives) } : null;
  return { positives, negatives, pairs, suggestedWeights };
}
