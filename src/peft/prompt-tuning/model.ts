/**
 * Prompt tuning (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning"):
 * n learned vectors placed before the token embeddings of a frozen model. As in PEFT, the virtual
 * tokens are always attended to, take positions 0..n-1, and carry no labels.
 */
import { type Value } from "../../graph/ir.js";
import * as o from "../../graph/ops.js";
import type { CausalLM } from "../../models/causal-lm.js";
import type { Batch } from "../../data/index.js";
import type { Tensor } from "../../runtime/session.js";
import { type LossGraph, lossFeeds, lossGraph } from "../../objective/lm.js";
import type { Adaptation } from "../method.js";

/**
 * [B, n + T, d]: row b is rows promptIndex[b] of the prompt table, then its token embeddings.
 * A table of several prompts with per-row indices lets one batch mix tasks; its gradient is
 * summed over the rows that used each vector.
 */
export function prependPrompt(table: Value, promptIndex: Value, tokenEmbeds: Value): Value {
  return o.concat([o.gather(table, promptIndex, 0), tokenEmbeds], 1);
}

/** promptIndex rows for a batch whose row b uses prompt `which[b]` of a table of n-vector prompts. */
export function promptIndexFor(which: readonly number[], numVirtual: number): { data: BigInt64Array; dims: number[] } {
  const data = new BigInt64Array(which.length * numVirtual);
  which.forEach((k, b) => {
    for (let j = 0; j < numVirtual; j++) data[b * numVirtual + j] = BigInt(k * numVirtual + j);
  });
  return { data, dims: [which.length, numVirtual] };
}

/** The adaptation of a prompt table [n, d] (one prompt): every row of a batch gets the prompt. */
export function promptAdaptation(table: Value, numVirtual: number): Adaptation {
  const promptIndex = o.input("prompt_index", "int64", ["batch", numVirtual]);
  return {
    virtualEmbeds: o.gather(table, promptIndex, 0), // [B, n, d]
    feeds: (batch) => ({ prompt_index: promptIndexFor(Array<number>(batch.batchSize).fill(0), numVirtual) }),
  };
}

/**
 * The loss graph of a prompt-tuned model as PEFT computes it (n = 0: the bare model), with the
 * trainable table as input "prompt" [tables·n, d]; feed it with `promptLossFeeds`.
 */
export function promptLossGraph(lm: CausalLM, numVirtual: number, tables = 1): LossGraph & { prompt?: Value } {
  if (numVirtual === 0) return lossGraph(lm);
  const prompt = o.input("prompt", "float32", [tables * numVirtual, lm.config.hiddenSize]);
  const promptIndex = o.input("prompt_index", "int64", ["batch", numVirtual]);
  return { ...lossGraph(lm, { virtualEmbeds: o.gather(prompt, promptIndex, 0) }), prompt };
}

/**
 * Feeds for `promptLossGraph`; row b uses prompt `which[b]` (default 0). Positions as PEFT gives them
 * (it passes no position_ids: 0..n+T-1 for every row, left padding included).
 */
export function promptLossFeeds(batch: Batch<ArrayLike<number>>, numVirtual: number, which?: readonly number[]): Record<string, Tensor> {
  return {
    ...lossFeeds(batch, numVirtual, "peft"),
    ...(numVirtual > 0 ? { prompt_index: promptIndexFor(which ?? Array<number>(batch.batchSize).fill(0), numVirtual) } : {}),
  };
}
