/**
 * Prompt tuning (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning"):
 * n learned vectors placed before the token embeddings of a frozen model. As in PEFT, the virtual
 * tokens are always attended to, take positions 0..n-1, and carry no labels.
 */
import { type Value } from "../../graph/ir.js";
import * as o from "../../graph/ops.js";

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
