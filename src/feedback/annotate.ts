/**
 * `softprompt annotate`: the model answers every input of a data file, and the answers go to a review
 * file with empty verdicts for a person to mark (in the file, or one at a time with `--interactive`).
 * A review file that already exists is resumed: its items must still match the data (the same input
 * on the same line), its verdicts are kept, and only the inputs it lacks are answered. The file is
 * rewritten atomically after every batch of answers and every verdict.
 */
import { existsSync } from "node:fs";
import { fail } from "../util/errors.js";
import { loadModel } from "../models/index.js";
import { readExamples, type Example } from "../data/index.js";
import { generate } from "../infer/generate.js";
import { isLoraPrompt } from "../infer/lora.js";
import { mergeLora } from "../peft/lora/merge.js";
import { loadSoftPrompt } from "../workflows.js";
import { countVerdicts, readReview, writeReview, type ReviewCounts, type ReviewItem } from "./review.js";
import { reviewInteractively, type Terminal } from "./interactive.js";

export interface AnnotateOptions {
  model: string;
  adapter?: string;
  /** Inputs: {"prompt"[, "completion"]} or {"text"} rows (.jsonl or .csv). */
  data: string;
  /** The review file (JSONL); resumed when it exists. */
  output: string;
  maxNewTokens?: number;
  batchSize?: number;
  /** Review in this terminal after answering. */
  interactive?: Terminal;
  onWarning?: (message: string) => void;
  onLog?: (line: string) => void;
}

export interface AnnotateReport {
  output: string;
  items: number;
  /** Answers made in this run (the rest were in the file already). */
  generated: number;
  counts: ReviewCounts;
  /** Whether an interactive review was ended before the last unreviewed item. */
  quit?: boolean;
}

export async function annotate(options: AnnotateOptions): Promise<AnnotateReport> {
  const inputs = inputsOf(await readExamples(options.data), options.data);
  const kept = existsSync(options.output) ? await readReview(options.output) : [];
  checkStillMatches(kept, inputs, options.output, options.data);
  const done = new Set(kept.map((it) => it.line));
  const todo = inputs.filter((x) => !done.has(x.line));
  const items = [...kept];
  if (todo.length > 0) {
    const model = await loadModel(options.model);
    const soft = options.adapter === undefined ? undefined : await loadSoftPrompt(options.adapter, model, options.model);
    soft?.warnings.forEach((w) => options.onWarning?.(w));
    const merged = soft !== undefined && isLoraPrompt(soft.prompt) ? mergeLora(model.lm, soft.prompt.modules) : undefined;
    const batchSize = options.batchSize ?? 8;
    for (let i = 0; i < todo.length; i += batchSize) {
      const chunk = todo.slice(i, i + batchSize);
      const out = await generate(
        merged ?? model.lm,
        model.tokenizer,
        chunk.map((x) => ({ text: x.prompt, prompt: merged === undefined ? soft?.prompt : undefined, maxNewTokens: options.maxNewTokens ?? 32 })),
      );
      chunk.forEach((x, k) => items.push({ line: x.line, prompt: x.prompt, answer: out[k].text ?? "", verdict: "", correction: null }));
      items.sort((a, b) => a.line - b.line);
      // Saved per batch: a run stopped half-way resumes from here.
      await writeReview(options.output, items);
      options.onLog?.(`answered ${Math.min(i + batchSize, todo.length)} of ${todo.length}`);
    }
  } else if (!existsSync(options.output)) {
    await writeReview(options.output, items);
  }
  const session = options.interactive === undefined ? undefined : await reviewInteractively(items, options.interactive, (xs) => writeReview(options.output, xs));
  return { output: options.output, items: items.length, generated: todo.length, counts: countVerdicts(items), ...(session === undefined ? {} : { quit: session.quit }) };
}

interface Input {
  line: number;
  prompt: string;
}

/** Each row's input: a prompt (its completion, if any, is the reference, not shown to the model) or a text. */
function inputsOf(examples: readonly Example[], file: string): Input[] {
  return examples.map((ex, i) => {
    const line = ex.source?.line ?? i + 1;
    if (ex.kind === "chat") fail("data", 'annotate takes {"prompt"} or {"text"} rows as inputs, not chats', { file, line, field: "messages" });
    return { line, prompt: ex.kind === "prompt" ? ex.prompt : ex.text };
  });
}

/** Every reviewed item must still be the same input on the same line of the data, or its verdict would be about another input. */
function checkStillMatches(items: readonly ReviewItem[], inputs: readonly Input[], reviewFile: string, dataFile: string): void {
  const byLine = new Map(inputs.map((x) => [x.line, x.prompt]));
  for (const it of items) {
    const now = byLine.get(it.line);
    const place = { file: reviewFile, line: it.at };
    if (now === undefined) fail("data", `reviews input line ${it.line}, but ${dataFile} has no input there; review the data again into a new file`, { ...place, field: "line" });
    if (now !== it.prompt) fail("data", `the input no longer matches ${dataFile}:${it.line} (review has ${JSON.stringify(it.prompt)}, the data ${JSON.stringify(now)}); review the data again into a new file`, { ...place, field: "prompt" });
  }
}
