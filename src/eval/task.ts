/**
 * Evaluation of one way of prompting on a dataset: loss and perplexity over the target tokens,
 * and task accuracy — exact match of the greedy completion, or, with choices, whether the most
 * likely choice is the right one. Soft, hard and no prompt run through the same code on the same data.
 */
import { fail } from "../util/errors.js";
import type { CausalLM } from "../models/causal-lm.js";
import { type Tokenizer, paddingId } from "../tokenizer/index.js";
import { type Example, makeBatches, tokenizeExamples } from "../data/index.js";
import type { Adapter } from "../peft/adapter.js";
import { generate, type AdapterPrompt } from "../infer/generate.js";
import { checkSoftPrompt } from "../infer/kv-cache.js";
import { scoreChoices } from "../infer/score.js";
import { LossEvaluator } from "./loss.js";
import { checkFitsContext } from "../objective/lm.js";

/** No prompt, a trained adapter (and what inference uses of it), or a hard text prompt before each input. */
export type Prompting = { kind: "none" } | { kind: "soft"; adapter: Adapter; prompt: AdapterPrompt } | { kind: "text"; text: string };

export interface TaskEvalOptions {
  maxLength?: number;
  batchSize?: number;
  /** Classify by these completions (each scored after the prompt) instead of generating. */
  choices?: string[];
  /** Longest greedy completion for exact match; default: the reference's token count + 4. */
  maxNewTokens?: number;
}

/** What evaluation uses when the options leave them out (the CLI shows them in --help). */
export const TASK_EVAL_DEFAULTS = { maxLength: 512, batchSize: 8 } as const;

export interface TaskEvalResult {
  /** Mean negative log-likelihood per target token over the whole dataset. */
  loss: number;
  perplexity: number;
  /** Exact match (or choice accuracy) over prompt/completion examples; null when there are none. */
  accuracy: number | null;
  examples: number;
  truncated: number;
}

export async function evaluateTask(
  lm: CausalLM,
  tokenizer: Tokenizer,
  examples: readonly Example[],
  prompting: Prompting,
  options: TaskEvalOptions = {},
): Promise<TaskEvalResult> {
  if (examples.length === 0) fail("data", "the evaluation set is empty");
  const { maxLength = TASK_EVAL_DEFAULTS.maxLength, batchSize = TASK_EVAL_DEFAULTS.batchSize } = options;
  const withHard = prompting.kind === "text" ? examples.map((ex) => prependText(ex, prompting.text)) : [...examples];
  const { items, truncated } = tokenizeExamples(withHard, tokenizer, { maxLength });
  const adapter = prompting.kind === "soft" ? prompting.adapter : undefined;
  const numVirtual = prompting.kind === "soft" ? checkSoftPrompt(lm, prompting.prompt) : 0;
  checkFitsContext(lm, numVirtual, items, (setting) => (setting === "maxLength" ? "--max-length" : "the adapter's virtual tokens"));
  const evaluator = await LossEvaluator.create(lm, adapter);
  const { loss, perplexity } = await evaluator.evaluate(makeBatches(items, { batchSize, padTokenId: paddingId(tokenizer), padSide: "right" }), adapter?.params);
  const accuracy = await taskAccuracy(lm, tokenizer, withHard, prompting, options);
  return { loss, perplexity, accuracy, examples: examples.length, truncated };
}

async function taskAccuracy(lm: CausalLM, tokenizer: Tokenizer, examples: Example[], prompting: Prompting, options: TaskEvalOptions): Promise<number | null> {
  const tasks = examples.filter((ex): ex is Extract<Example, { kind: "prompt" }> => ex.kind === "prompt");
  if (tasks.length === 0) return null;
  const prompt = prompting.kind === "soft" ? prompting.prompt : undefined;
  const encode = (text: string, special: boolean) => tokenizer.encode(text, { addSpecialTokens: special });
  let correct = 0;
  if (options.choices !== undefined) {
    const choices = options.choices.map((c) => encode(c, false));
    for (const ex of tasks) {
      const { best } = await scoreChoices(lm, { inputIds: encode(ex.prompt, true), choices, prompt });
      if (options.choices[best].trim() === ex.completion.trim()) correct++;
    }
    return correct / tasks.length;
  }
  const batchSize = options.batchSize ?? TASK_EVAL_DEFAULTS.batchSize;
  for (let i = 0; i < tasks.length; i += batchSize) {
    const chunk = tasks.slice(i, i + batchSize);
    const out = await generate(
      lm,
      tokenizer,
      chunk.map((ex) => ({ text: ex.prompt, prompt, maxNewTokens: options.maxNewTokens ?? encode(ex.completion, false).length + 4 })),
    );
    out.forEach((g, k) => {
      if ((g.text ?? "").trim() === chunk[k].completion.trim()) correct++;
    });
  }
  return correct / tasks.length;
}

/** A hard prompt goes before the example's own text (for chats: before the first message). */
function prependText(ex: Example, text: string): Example {
  switch (ex.kind) {
    case "prompt":
      return { ...ex, prompt: text + ex.prompt };
    case "text":
      return { ...ex, text: text + ex.text };
    case "chat":
      return { ...ex, messages: ex.messages.map((m, i) => (i === 0 ? { ...m, content: text + m.content } : m)) };
  }
}
