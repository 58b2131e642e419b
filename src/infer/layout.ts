/**
 * How a batch of rows — each an optional soft prompt and some token ids — is laid out for one forward.
 *
 * Keys: the prompts' cached keys/values fill the first `pastLength` columns (row b's n_b virtual tokens
 * in the last n_b of them, the rest masked), then the tokens, left-padded to a common `width`.
 * Attention sees only the key mask and the positions, so where padding sits changes nothing.
 *
 * Positions ("row", the default): each row gets what it would get alone, whatever else is in the batch —
 * virtual tokens 0..n-1, then its tokens n, n+1, … (n = 0 without a prompt, which is also what
 * HF generate's cumsum(mask) - 1 gives). For a single row this is exactly PEFT's and HF's, and a mixed
 * batch (different prompts, none, different lengths) gives each row the tokens of its own call.
 * ("peft"): prompt rows count the batch's left padding as PEFT does (it passes no position_ids, so
 * positions run 0..n+width-1 over virtual tokens, padding and tokens): a row padded by p has its tokens
 * at n+p, n+p+1, …; rows without a prompt are as in "row". This reproduces peft_model.generate() on a
 * left-padded same-prompt batch, at the price of results that depend on the batch.
 */
import { fail } from "../util/errors.js";
import type { CausalLM } from "../models/causal-lm.js";
import { architectureFor } from "../models/families.js";
import type { Tensor } from "../runtime/session.js";

export type PositionMode = "row" | "peft";

export interface LayoutRow {
  ids: readonly number[];
  /** Virtual tokens before the ids (0: no soft prompt). */
  numVirtual: number;
}

export interface BatchLayout {
  batch: number;
  /** Columns of cached prompt keys before the tokens (the largest n_b). */
  pastLength: number;
  /** Token columns (the longest row). */
  width: number;
  /** Padding columns before each row's tokens. */
  padding: number[];
  /** [B, width] int64, padding filled with the pad id. */
  inputIds: Tensor<BigInt64Array>;
  /** [B, width] int64. */
  positions: Tensor<BigInt64Array>;
  /** Per row, 1 for every visible key column over past + width. */
  keyMask: number[][];
  /** Per row, the position of the token after its last one. */
  nextPosition: number[];
}

export function layoutBatch(rows: readonly LayoutRow[], mode: PositionMode, padId: number): BatchLayout {
  const B = rows.length;
  const pastLength = Math.max(0, ...rows.map((r) => r.numVirtual));
  const width = Math.max(0, ...rows.map((r) => r.ids.length));
  const inputIds = new BigInt64Array(B * width).fill(BigInt(padId));
  const positions = new BigInt64Array(B * width);
  const padding: number[] = [];
  const keyMask: number[][] = [];
  const nextPosition: number[] = [];
  rows.forEach(({ ids, numVirtual: n }, b) => {
    const pad = width - ids.length;
    const start = n + (mode === "peft" && n > 0 ? pad : 0);
    ids.forEach((id, j) => {
      inputIds[b * width + pad + j] = BigInt(id);
      positions[b * width + pad + j] = BigInt(start + j);
    });
    padding.push(pad);
    nextPosition.push(start + ids.length);
    const mask = new Array<number>(pastLength + width).fill(0);
    for (let c = pastLength - n; c < pastLength; c++) mask[c] = 1;
    for (let c = pastLength + pad; c < pastLength + width; c++) mask[c] = 1;
    keyMask.push(mask);
  });
  return {
    batch: B,
    pastLength,
    width,
    padding,
    inputIds: { data: inputIds, dims: [B, width] },
    positions: { data: positions, dims: [B, width] },
    keyMask,
    nextPosition,
  };
}

/** Token ids must be integers inside the vocabulary. */
export function checkIds(lm: CausalLM, ids: readonly number[], field: string): void {
  const V = lm.config.vocabSize;
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= V) fail("usage", `token id ${id} is outside the vocabulary (0..${V - 1})`, { field });
  }
}

/** Learned absolute positions (GPT-2) end at max_position_embeddings; rotary ones do not. */
export function checkPositions(lm: CausalLM, lastPosition: number, field: string): void {
  const max = lm.config.maxPositions;
  if (architectureFor(lm.config.modelType).positions === "learned" && lastPosition >= max) {
    fail("usage", `the sequence would reach position ${lastPosition}, but the model has ${max} positions (virtual tokens, input and new tokens together)`, { field });
  }
}
