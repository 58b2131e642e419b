/**
 * Ways of prompting side by side on one model and one held-out set (`softprompt compare-prompts`): no
 * prompt, a hard instruction, k worked examples drawn from the training set, a soft prompt (trained
 * here on the training set, or given), each with exact match and loss on the same held-out rows, 95%
 * bootstrap intervals (seeded; the same resamples for every way, so differences are paired), and what
 * each costs at inference: positions prefilled per request and the measured prefill time per request.
 * A template that mixes written text and soft spans is trained and measured the same way when given.
 * Writes the report as JSON and as one self-contained HTML page (src/report/compare-prompts.ts).
 */
import { join } from "node:path";
import { promises as fsp } from "node:fs";
import { fail } from "./util/errors.js";
import { Rng } from "./util/rng.js";
import { writeFileAtomic } from "./util/fs.js";
import { loadModel, type Model } from "./models/index.js";
import { readExamples, tokenizeExample, makeBatches, type Example } from "./data/index.js";
import { paddingId } from "./tokenizer/index.js";
import { generate, type AdapterPrompt } from "./infer/generate.js";
import { LossEvaluator } from "./eval/loss.js";
import { prefillSecondsPerRequest } from "./eval/prefill.js";
import type { Adapter } from "./peft/adapter.js";
import { loadSoftPrompt, train } from "./workflows.js";
import { generateWithTemplate, loadTemplateAdapter, renderPrompt, renderRows, type TemplateAdapter } from "./template/index.js";
import { comparePromptsHtml } from "./report/compare-prompts.js";

export const REPORT_HTML = "report.html";
export const REPORT_JSON = "compare-prompts.json";

/** A soft prompt trained here when none is given: the demo's settings, which fit the example tasks. */
export const SOFT_DEFAULTS: SoftSettings = { numVirtualTokens: 20, steps: 200, lr: 0.1, batchSize: 8 };

export interface SoftSettings {
  numVirtualTokens: number;
  steps: number;
  lr: number;
  batchSize: number;
}

export interface ComparePromptsOptions {
  model: string;
  /** Training data: where the k shots are drawn from and the soft prompt is trained on. */
  data: string;
  /** Held-out data every way is measured on. */
  valid: string;
  /** report.html, compare-prompts.json and the trained soft prompt (soft/) go here. */
  output: string;
  /** The hard prompt, put before every input (and before each shot); without it, that row is left out. */
  instruction?: string;
  /** Worked examples before each input (0: leave the row out). */
  shots?: number;
  /** A trained soft prompt to compare instead of training one. */
  adapter?: string;
  /** A template mixing written text and soft spans (README: Templates), trained here on --data; without it, that row is left out. */
  template?: string;
  /** Settings for the soft prompt trained here. */
  soft?: Partial<SoftSettings>;
  seed?: number;
  /** Bootstrap resamples (at least 1000). */
  resamples?: number;
  onLog?: (line: string) => void;
}

export interface Interval {
  value: number;
  /** The 2.5th and 97.5th percentiles of the bootstrap distribution. */
  low: number;
  high: number;
}

export interface WayResult {
  name: string;
  /** What goes before each input. */
  description: string;
  exactMatch: Interval;
  /** Mean negative log-likelihood per answer token (the answer and its end token). */
  loss: Interval;
  /** Positions prefilled per request, virtual tokens included (mean over the held-out inputs). */
  tokensPerRequest: number;
  /** Measured: every held-out request in one batch, one new token, median of 5, over the request count (a template's: its written text embedded in each run too). */
  prefillMsPerRequest: number;
}

export interface Difference {
  /** On the same resamples: exact match `better` − `worse`, loss `worse` − `better` (both above 0 when `better` is). */
  worse: string;
  better: string;
  exactMatch: Interval;
  loss: Interval;
}

export interface ComparePromptsReport {
  model: string;
  data: string;
  valid: string;
  examples: number;
  seed: number;
  resamples: number;
  ways: WayResult[];
  /** Ways not measured, and why. */
  leftOut: { name: string; reason: string }[];
  /** Each way against the one before it (in the order none, hard, k-shot, soft, template). */
  differences: Difference[];
  /** Whether no prompt < hard prompt < soft prompt holds in exact match with 95% confidence, said plainly. */
  verdict: string;
  html: string;
  json: string;
}

type TaskExample = Extract<Example, { kind: "prompt" }>;

interface Way {
  name: string;
  description: string;
  /** The text before each input. */
  before: string;
  soft?: { adapter: Adapter; prompt: AdapterPrompt; numVirtual: number };
  template?: TemplateAdapter;
}

export async function comparePrompts(options: ComparePromptsOptions): Promise<ComparePromptsReport> {
  const seed = options.seed ?? 0;
  const resamples = options.resamples ?? 1000;
  if (!Number.isInteger(resamples) || resamples < 1000) fail("usage", `expected at least 1000 bootstrap resamples, got ${resamples}`, { field: "--resamples" });
  const shots = options.shots ?? 3;
  if (!Number.isInteger(shots) || shots < 0) fail("usage", `expected a whole number of shots ≥ 0, got ${shots}`, { field: "--shots" });
  const trainSet = tasksOf(await readExamples(options.data), options.data);
  const valid = tasksOf(await readExamples(options.valid), options.valid);
  if (shots > trainSet.length) fail("usage", `${shots} shots need as many training rows; ${options.data} has ${trainSet.length}`, { field: "--shots" });
  const model = await loadModel(options.model);
  const log = options.onLog ?? (() => {});

  const instruction = options.instruction ?? "";
  const ways: Way[] = [{ name: "no prompt", description: "the input alone", before: "" }];
  const leftOut: ComparePromptsReport["leftOut"] = [];
  if (options.instruction !== undefined) ways.push({ name: "hard prompt", description: JSON.stringify(options.instruction), before: options.instruction });
  else leftOut.push({ name: "hard prompt", reason: "no --instruction given" });
  if (shots > 0) {
    const drawn = new Rng(seed).shuffle([...trainSet]).slice(0, shots);
    const before = drawn.map((ex) => `${instruction}${ex.prompt}${ex.completion}\n`).join("") + instruction;
    ways.push({ name: `${shots}-shot`, description: `${shots} training rows${instruction === "" ? "" : ", each after the instruction"}, then the instruction and the input`, before });
  } else leftOut.push({ name: "k-shot", reason: "--shots 0" });
  ways.push({ name: "soft prompt", description: "", before: "", soft: await softPrompt(options, model, log) });
  const soft = ways[ways.length - 1];
  soft.description = `${soft.soft!.numVirtual} learned vectors${options.adapter === undefined ? " trained on --data" : ` from ${options.adapter}`}`;
  if (options.template !== undefined) ways.push({ name: "mixed template", description: `${options.template} trained on --data`, before: "", template: await trainTemplate(options, model, log) });
  else leftOut.push({ name: "mixed template", reason: "no --template given" });

  // The same resamples of the held-out rows for every way, so differences between ways are paired.
  const rng = new Rng(seed);
  const draws = Array.from({ length: resamples }, () => Array.from({ length: valid.length }, () => rng.int(valid.length)));
  const scored: Scored[] = [];
  for (const way of ways) {
    log(`measuring ${way.name}`);
    scored.push({ way, ...(await score(model, valid, way)) });
  }
  const results: WayResult[] = [];
  for (const { way, correct, nll, tokens } of scored) {
    results.push({
      name: way.name,
      description: way.description,
      exactMatch: bootstrap(draws, (idx) => mean(idx.map((i) => correct[i]))),
      loss: bootstrap(draws, (idx) => sum(idx.map((i) => nll[i])) / sum(idx.map((i) => tokens[i]))),
      ...(await cost(model, valid, way)),
    });
  }
  const differences = scored.slice(1).map((b, i) => paired(draws, scored[i], b));
  const html = join(options.output, REPORT_HTML);
  const json = join(options.output, REPORT_JSON);
  const report: ComparePromptsReport = {
    model: options.model,
    data: options.data,
    valid: options.valid,
    examples: valid.length,
    seed,
    resamples,
    ways: results,
    leftOut,
    differences,
    verdict: verdict(draws, scored),
    html,
    json,
  };
  await fsp.mkdir(options.output, { recursive: true });
  await writeFileAtomic(json, JSON.stringify(report, null, 2) + "\n");
  await writeFileAtomic(html, comparePromptsHtml(report));
  return report;
}

/** Only prompt/completion rows have an answer to match; anything else is named. */
function tasksOf(examples: readonly Example[], file: string): TaskExample[] {
  const other = examples.find((ex) => ex.kind !== "prompt");
  if (other !== undefined) fail("data", `compare-prompts needs {"prompt","completion"} rows (an answer to match); this row is ${other.kind === "chat" ? "a chat" : "a text"}`, { file, line: other.source?.line });
  return examples as TaskExample[];
}

async function softPrompt(options: ComparePromptsOptions, model: Model, log: (line: string) => void): Promise<NonNullable<Way["soft"]>> {
  let dir = options.adapter;
  if (dir === undefined) {
    dir = join(options.output, "soft");
    const settings = { ...SOFT_DEFAULTS, ...options.soft };
    log(`training a soft prompt (${settings.numVirtualTokens} vectors, ${settings.steps} steps) → ${dir}`);
    await train({ ...settings, seed: options.seed ?? 0, model: options.model, data: options.data, valid: options.valid, output: dir, overwrite: true, onLog: log });
  }
  const loaded = await loadSoftPrompt(dir, model, options.model);
  loaded.warnings.forEach(log);
  return { adapter: loaded.adapter, prompt: loaded.prompt, numVirtual: loaded.numVirtual };
}

async function trainTemplate(options: ComparePromptsOptions, model: Model, log: (line: string) => void): Promise<TemplateAdapter> {
  const dir = join(options.output, "template");
  const { steps, lr, batchSize } = { ...SOFT_DEFAULTS, ...options.soft };
  log(`training the template ${options.template} (${steps} steps) → ${dir}`);
  await train({ steps, lr, batchSize, template: options.template, seed: options.seed ?? 0, model: options.model, data: options.data, valid: options.valid, output: dir, overwrite: true, onLog: log });
  return (await loadTemplateAdapter(dir, model.tokenizer))!;
}

/** Per held-out row: exact match (1 or 0) of the greedy answer, the answer tokens' summed NLL and their count. */
async function score(model: Model, valid: readonly TaskExample[], way: Way): Promise<{ correct: number[]; nll: number[]; tokens: number[] }> {
  const { lm, tokenizer } = model;
  const rows = valid.map((ex) => ({ ...ex, prompt: way.before + ex.prompt }));
  const adapter = way.template?.adapter ?? way.soft?.adapter;
  const maxLength = lm.config.maxPositions - (way.soft?.numVirtual ?? 0);
  const items = way.template === undefined ? rows.map((row) => tokenizeExample(row, tokenizer, { maxLength })) : renderRows(way.template, rows, tokenizer, { maxLength }).items;
  const evaluator = await LossEvaluator.create(lm, adapter);
  const nll: number[] = [];
  const tokens: number[] = [];
  for (const item of items) {
    // One row per batch: each row's own loss, for the bootstrap.
    const r = await evaluator.evaluate(makeBatches([item], { batchSize: 1, padTokenId: paddingId(tokenizer), padSide: "right" }), adapter?.params);
    nll.push(r.loss * r.tokens);
    tokens.push(r.tokens);
  }
  const correct: number[] = [];
  const batchSize = 16;
  for (let i = 0; i < rows.length; i += batchSize) {
    const chunk = rows.slice(i, i + batchSize);
    const maxNewTokens = Math.max(...chunk.map((ex) => tokenizer.encode(ex.completion, { addSpecialTokens: false }).length + 4));
    const out = way.template === undefined
      ? await generate(lm, tokenizer, chunk.map((ex) => ({ text: ex.prompt, prompt: way.soft?.prompt, maxNewTokens })))
      : (await generateWithTemplate(lm, tokenizer, way.template, chunk, { maxNewTokens })).generations;
    out.forEach((g, k) => correct.push((g.text ?? "").trim() === chunk[k].completion.trim() ? 1 : 0));
  }
  return { correct, nll, tokens };
}

/** Positions prefilled per request and the measured prefill time per request. */
async function cost(model: Model, valid: readonly TaskExample[], way: Way): Promise<Pick<WayResult, "tokensPerRequest" | "prefillMsPerRequest">> {
  const { lm, tokenizer } = model;
  if (way.template !== undefined) {
    const t = way.template;
    const positions = valid.map((ex) => renderPrompt(t.template, t.layout, ex, tokenizer, { maxLength: lm.config.maxPositions }).inputIds.length);
    // Each row's input is its own prompt (embeddings), so nothing is cached between runs: time whole one-token generations.
    const run = () => generateWithTemplate(lm, tokenizer, t, valid, { maxNewTokens: 1 });
    await run();
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      await run();
      times.push(performance.now() - started);
    }
    return { tokensPerRequest: mean(positions), prefillMsPerRequest: times.sort((a, b) => a - b)[2] / valid.length };
  }
  const requests = valid.map((ex) => ({ inputIds: tokenizer.encode(way.before + ex.prompt, { addSpecialTokens: true }), prompt: way.soft?.prompt }));
  return {
    tokensPerRequest: mean(requests.map((r) => r.inputIds.length)) + (way.soft?.numVirtual ?? 0),
    prefillMsPerRequest: 1000 * (await prefillSecondsPerRequest(lm, tokenizer, requests)),
  };
}

/** The statistic on the whole set, and the 2.5th and 97.5th percentiles over the resamples. */
export function bootstrap(draws: readonly number[][], statistic: (indices: readonly number[]) => number): Interval {
  const n = draws[0]?.length ?? 0;
  const value = statistic(Array.from({ length: n }, (_, i) => i));
  const stats = draws.map(statistic).sort((a, b) => a - b);
  const at = (q: number) => stats[Math.min(stats.length - 1, Math.max(0, Math.round(q * (stats.length - 1))))];
  return { value, low: at(0.025), high: at(0.975) };
}

const sum = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0);
const mean = (xs: readonly number[]) => sum(xs) / xs.length;

type Scored = { way: Way; correct: number[]; nll: number[]; tokens: number[] };

/** `b` against `a` on the same resamples: exact match b − a, and loss a − b (both positive when b is better). */
function paired(draws: readonly number[][], a: Scored, b: Scored): Difference {
  const lossOf = (s: Scored, idx: readonly number[]) => sum(idx.map((k) => s.nll[k])) / sum(idx.map((k) => s.tokens[k]));
  return {
    worse: a.way.name,
    better: b.way.name,
    exactMatch: bootstrap(draws, (idx) => mean(idx.map((k) => b.correct[k] - a.correct[k]))),
    loss: bootstrap(draws, (idx) => lossOf(a, idx) - lossOf(b, idx)),
  };
}

/** Whether no prompt < hard prompt < soft prompt, each step's paired 95% interval above 0, in exact match and in loss — said plainly either way. */
function verdict(draws: readonly number[][], scored: readonly Scored[]): string {
  const find = (name: string) => scored.find((s) => s.way.name === name);
  const chain = ["no prompt", "hard prompt", "soft prompt"].map(find);
  if (chain.some((s) => s === undefined)) return "no prompt < hard prompt < soft prompt cannot be judged without a hard prompt (--instruction)";
  const steps = [paired(draws, chain[0]!, chain[1]!), paired(draws, chain[1]!, chain[2]!)];
  const pct = (i: Interval) => `${(100 * i.value).toFixed(1)} points [${(100 * i.low).toFixed(1)}, ${(100 * i.high).toFixed(1)}]`;
  const nats = (i: Interval) => `${i.value.toFixed(4)} [${i.low.toFixed(4)}, ${i.high.toFixed(4)}]`;
  const judge = (metric: "exactMatch" | "loss", show: (i: Interval) => string) => {
    const holds = steps.every((d) => d[metric].low > 0);
    // Exact match is better − worse, loss worse − better: each named in the order it is subtracted.
    const named = (d: Difference) => (metric === "exactMatch" ? `${d.better} − ${d.worse}` : `${d.worse} − ${d.better}`);
    const detail = steps.map((d) => `${named(d)} ${show(d[metric])}${d[metric].low > 0 ? "" : " (not above 0)"}`).join(", ");
    return `${metric === "exactMatch" ? "exact match" : "loss"}: ${holds ? "holds" : "does not hold"} (${detail})`;
  };
  return `no prompt < hard prompt < soft prompt at 95% confidence — ${judge("exactMatch", pct)}; ${judge("loss", nats)}`;
}
