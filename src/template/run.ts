/**
 * Templates at work: rows rendered for training and the loss, evaluation (loss and exact match), and
 * generation. Generation hands the engine a row's rendered input up to `{answer}` as embeddings (written
 * tokens' from the model's table, soft vectors from the adapter's) with the last written token as the
 * row's input, so a mixed layout needs nothing new from the engine and sees what training saw.
 */
import { createHash } from "node:crypto";
import { fail } from "../util/errors.js";
import * as o from "../graph/ops.js";
import { Program } from "../runtime/session.js";
import type { CausalLM } from "../models/causal-lm.js";
import { type Tokenizer, paddingId } from "../tokenizer/index.js";
import { type Example, type TokenizedExample, makeBatches } from "../data/index.js";
import type { DataTokenizer } from "../data/tokenize.js";
import { LossEvaluator } from "../eval/loss.js";
import { TASK_EVAL_DEFAULTS, type TaskEvalResult } from "../eval/task.js";
import { generate, type GenerateRequest, type Generation } from "../infer/generate.js";
import type { DecodeOptions } from "../infer/engine.js";
import { PromptCache, type SoftPrompt } from "../infer/kv-cache.js";
import { TABLE } from "../peft/template/index.js";
import { type RenderOptions, renderExample, renderPrompt } from "./render.js";
import type { TemplateAdapter } from "./adapter.js";

/** Rows through the template, ready to batch; `droppedTurns` counts the earlier chat turns left out so rows fit. */
export function renderRows(t: Pick<TemplateAdapter, "template" | "layout">, examples: readonly Example[], tokenizer: DataTokenizer, options: RenderOptions): { items: TokenizedExample[]; droppedTurns: number } {
  let droppedTurns = 0;
  const items = examples.map((example) => {
    const { droppedTurns: dropped, ...row } = renderExample(t.template, t.layout, example, tokenizer, options);
    droppedTurns += dropped;
    return { ...row, ...(example.fields === undefined ? {} : { fields: example.fields }) };
  });
  return { items, droppedTurns };
}

export interface TemplateEvalOptions {
  maxLength?: number;
  batchSize?: number;
  /** Code values for every row (`--code NAME=value`), over the rows' own fields. */
  codes?: ReadonlyMap<string, string>;
  /** Longest greedy answer for exact match; default: the reference's token count + 4. */
  maxNewTokens?: number;
}

export interface TemplateEvalResult extends TaskEvalResult {
  droppedTurns: number;
}

/** Loss over the answers and exact match of the greedy answer (prompt/completion rows), through the template. */
export async function evaluateTemplate(lm: CausalLM, tokenizer: Tokenizer, examples: readonly Example[], t: TemplateAdapter, options: TemplateEvalOptions = {}): Promise<TemplateEvalResult> {
  if (examples.length === 0) fail("data", "the evaluation set is empty");
  const { batchSize = TASK_EVAL_DEFAULTS.batchSize, codes } = options;
  const maxLength = Math.min(options.maxLength ?? TASK_EVAL_DEFAULTS.maxLength, lm.config.maxPositions);
  const { items, droppedTurns } = renderRows(t, examples, tokenizer, { maxLength, codes });
  const evaluator = await LossEvaluator.create(lm, t.adapter);
  const { loss, perplexity } = await evaluator.evaluate(makeBatches(items, { batchSize, padTokenId: paddingId(tokenizer), padSide: "right" }), t.adapter?.params);
  const tasks = examples.filter((ex): ex is Extract<Example, { kind: "prompt" }> => ex.kind === "prompt");
  let correct = 0;
  for (let i = 0; i < tasks.length; i += batchSize) {
    const chunk = tasks.slice(i, i + batchSize);
    const maxNewTokens = Math.max(...chunk.map((ex) => options.maxNewTokens ?? tokenizer.encode(ex.completion, { addSpecialTokens: false }).length + 4));
    const { generations } = await generateWithTemplate(lm, tokenizer, t, chunk, { maxNewTokens, codes, maxLength });
    generations.forEach((g, k) => {
      if ((g.text ?? "").trim() === chunk[k].completion.trim()) correct++;
    });
  }
  return { loss, perplexity, accuracy: tasks.length === 0 ? null : correct / tasks.length, examples: examples.length, truncated: 0, droppedTurns };
}

export interface TemplateGenerateOptions extends Partial<DecodeOptions> {
  codes?: ReadonlyMap<string, string>;
  /** Longest rendered input (default: the model's positions less maxNewTokens). */
  maxLength?: number;
}

/** Continue each row's rendered input up to `{answer}` (its answer is not read); stops before the template's written text after `{answer}`. */
export async function generateWithTemplate(
  lm: CausalLM,
  tokenizer: Tokenizer,
  t: TemplateAdapter,
  examples: readonly Example[],
  options: TemplateGenerateOptions = {},
): Promise<{ generations: Generation[]; droppedTurns: number }> {
  const { codes, maxLength, ...decode } = options;
  const maxNewTokens = decode.maxNewTokens ?? 32;
  const rows = await templateEngineRows(lm, tokenizer, t, examples, { codes, maxLength: Math.min(maxLength ?? Infinity, lm.config.maxPositions - maxNewTokens) });
  const requests: GenerateRequest[] = rows.map(({ inputIds, prompt, stop }) => ({ ...decode, maxNewTokens, stop: [...(decode.stop ?? []), ...stop], inputIds, prompt }));
  const generations = await generate(lm, tokenizer, requests, { promptCache: new PromptCache(lm, Math.max(1, requests.length)), addSpecialTokens: false });
  return { generations, droppedTurns: rows.reduce((n, r) => n + r.droppedTurns, 0) };
}

/** A row for the engine: the last written token as its input, everything before it as a soft prompt (none when nothing is before it). */
export interface TemplateEngineRow {
  inputIds: number[];
  prompt?: SoftPrompt;
  /** The template's written text after `{answer}`: it closes the answer. */
  stop: string[];
  droppedTurns: number;
}

/** Each row rendered up to `{answer}` (at most `maxLength` tokens) as the engine takes it. */
export async function templateEngineRows(lm: CausalLM, tokenizer: DataTokenizer, t: TemplateAdapter, examples: readonly Example[], options: { codes?: ReadonlyMap<string, string>; maxLength: number }): Promise<TemplateEngineRow[]> {
  const embed = await tokenEmbedder(lm);
  const table = t.adapter?.params.get(TABLE)?.data;
  const d = lm.config.hiddenSize;
  const after = t.template.segments.slice(t.template.segments.findIndex((s) => s.kind === "answer") + 1);
  const closing = after.every((s) => s.kind === "text") ? after.map((s) => (s.kind === "text" ? s.text : "")).join("").trim() : "";
  const stop = closing === "" ? [] : [closing];
  const rows: TemplateEngineRow[] = [];
  for (const [i, example] of examples.entries()) {
    const row = renderPrompt(t.template, t.layout, example, tokenizer, options);
    const last = row.inputIds.length - 1;
    if (last < 0 || row.softIndex[last] >= 0) {
      fail("usage", "generation continues from written text: put a written token (such as \"= \" or a slot) right before {answer}", { file: t.template.file, field: `rows[${i}]` });
    }
    const base = { inputIds: [row.inputIds[last]], stop, droppedTurns: row.droppedTurns };
    if (last === 0) {
      rows.push(base);
      continue;
    }
    // Everything before the last token as embeddings: written tokens' own, soft vectors from the table.
    const embeddings = await embed(row.inputIds.slice(0, last));
    row.softIndex.slice(0, last).forEach((s, p) => {
      if (s >= 0) embeddings.set(table!.subarray(s * d, (s + 1) * d), p * d);
    });
    const id = `template:${createHash("sha256").update(new Uint8Array(embeddings.buffer)).digest("hex").slice(0, 24)}`;
    rows.push({ ...base, prompt: { id, embeddings } });
  }
  return rows;
}

type Embedder = (ids: readonly number[]) => Promise<Float32Array>;
/** One compiled embedding program per model (a server renders every request through it). */
const embedders = new WeakMap<CausalLM, Promise<Embedder>>();

/** Token ids → their input embeddings [n, d] as the model computes them (any scaling included). */
function tokenEmbedder(lm: CausalLM): Promise<Embedder> {
  let embedder = embedders.get(lm);
  if (embedder === undefined) {
    const ids = o.input("ids", "int64", [1, "n"]);
    embedder = Program.compile({ embeds: lm.embed(ids) }).then((program) => async (tokens: readonly number[]) => {
      const out = await program.run({ ...lm.weights.feeds(), ids: { data: BigInt64Array.from(tokens, BigInt), dims: [1, tokens.length] } });
      return (out.embeds.data as Float32Array).slice();
    });
    embedders.set(lm, embedder);
  }
  return embedder;
}

/** A tokenize step for the train workflow: every row through the template, nothing cut (dropped chat turns counted). */
export function templateTokenizer(t: Pick<TemplateAdapter, "template" | "layout">, tokenizer: DataTokenizer, maxLength: number) {
  return (examples: readonly Example[]) => ({ ...renderRows(t, examples, tokenizer, { maxLength }), truncated: 0 });
}
