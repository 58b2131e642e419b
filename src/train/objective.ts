/**
 * The language-model objective: mean cross-entropy of the answer tokens, for the frozen model with an
 * adapter's changes (or none), with the LM head applied only at positions that carry a label (it is the
 * model's largest matmul). Labels follow HF: the token at position t predicts labels[t + 1]; -100 is
 * not counted; a row's first token is predicted only by virtual tokens before it, never by another row.
 */
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import { fail } from "../util/errors.js";
import type { CausalLM } from "../models/causal-lm.js";
import { type PositionMode, attentionPattern } from "../models/inputs.js";
import { type Batch, IGNORE_INDEX } from "../data/index.js";
import type { Tensor } from "../runtime/session.js";
import type { Adaptation } from "../peft/method.js";

export interface LossGraph {
  /** Mean cross-entropy over labelled tokens. */
  loss: Value;
  /** [B, n + T, d] after the final norm. */
  hidden: Value;
  /** How many labelled tokens the batch has (as float): the weight of this batch's mean. */
  count: Value;
  /** Virtual tokens before the text (0 without them). */
  numVirtual: number;
}

/** The loss graph of the model with `adaptation` (none: the bare model); feed it with `lossFeeds`. */
export function lossGraph(lm: CausalLM, adaptation?: Pick<Adaptation, "virtualEmbeds" | "hooks">): LossGraph {
  const ids = o.input("input_ids", "int64", ["batch", "seq"]);
  const virtual = adaptation?.virtualEmbeds;
  const numVirtual = virtual === undefined ? 0 : (virtual.shape[1] as number);
  const total = numVirtual > 0 ? `${numVirtual}+seq` : "seq"; // virtual tokens, then the text
  const positions = o.input("position_ids", "int64", ["batch", total]);
  const allowed = o.input("allowed", "bool", ["batch", 1, total, total]);
  const labelPositions = o.input("label_positions", "int64", ["labels"]);
  const labelTargets = o.input("label_targets", "int64", ["labels"]);

  const tokens = lm.embed(ids);
  const inputsEmbeds = virtual === undefined ? tokens : o.concat([virtual, tokens], 1);
  const { hidden } = lm.forward({ inputsEmbeds, positions, allowed, hooks: adaptation?.hooks });
  const picked = o.gather(o.reshape(hidden, [-1, lm.config.hiddenSize]), labelPositions, 0); // [M, d]: only labelled positions
  const loss = nn.crossEntropy(lm.lmHead(picked), labelTargets);
  const count = o.cast(o.reduceSum(o.cast(o.greater(labelTargets, -1), "int64"), [0]), "float32");
  return { loss, hidden, count, numVirtual };
}

/**
 * Feeds for `lossGraph` from a right- or left-padded batch after `numVirtual` virtual tokens.
 * Positions "row" (default): virtual tokens 0..n-1, then each row's real tokens n, n+1, … wherever its
 * padding sits, so a loss never depends on the batch. "peft": 0..n+T-1 for every row, padding
 * included, as PEFT's prompt tuning (it passes no position_ids); the same for right-padded batches.
 */
export function lossFeeds(batch: Batch<ArrayLike<number>>, numVirtual: number, mode: PositionMode = "row"): Record<string, Tensor> {
  const { batchSize: B, seqLen: T } = batch;
  const L = numVirtual + T;
  const keyMask: number[][] = [];
  const positions = new BigInt64Array(B * L);
  const labelAt: number[] = [];
  const targets: number[] = [];
  const ids = new BigInt64Array(B * T);
  for (let b = 0; b < B; b++) {
    const real = (t: number) => batch.attentionMask[b * T + t] !== 0;
    keyMask.push([...Array<number>(numVirtual).fill(1), ...Array.from({ length: T }, (_, t) => (real(t) ? 1 : 0))]);
    let seen = 0;
    for (let p = 0; p < L; p++) {
      const t = p - numVirtual; // index in the text, negative for virtual tokens
      const isReal = t < 0 || real(t);
      positions[b * L + p] = BigInt(mode === "peft" ? p : isReal ? seen : 0);
      if (isReal) seen++;
    }
    for (let t = 0; t < T; t++) ids[b * T + t] = BigInt(batch.inputIds[b * T + t]);
    // Each real token's label is predicted at the position of the real token (or virtual token) before
    // it; a row's first token, without virtual tokens, has nothing before it and is not predicted.
    let before = numVirtual - 1;
    for (let t = 0; t < T; t++) {
      const label = batch.labels[b * T + t];
      if (!real(t)) {
        if (label !== IGNORE_INDEX) fail("data", `row ${b} has a label on padding at position ${t}; padding must carry ${IGNORE_INDEX}`, { field: `labels[${b}][${t}]` });
        continue;
      }
      if (label !== IGNORE_INDEX && before >= 0) {
        labelAt.push(b * L + before);
        targets.push(label);
      }
      before = numVirtual + t;
    }
  }
  return {
    input_ids: { data: ids, dims: [B, T] },
    position_ids: { data: positions, dims: [B, L] },
    allowed: attentionPattern(keyMask, L),
    label_positions: { data: BigInt64Array.from(labelAt, BigInt), dims: [labelAt.length] },
    label_targets: { data: BigInt64Array.from(targets, BigInt), dims: [targets.length] },
  };
}

/** Virtual tokens and the longest example must fit the model's positions; checked before anything runs or is written. */
export function checkFitsContext(lm: CausalLM, numVirtual: number, items: readonly { inputIds: readonly number[] }[], flagOf: (setting: string) => string): void {
  const longest = Math.max(0, ...items.map((x) => x.inputIds.length));
  const max = lm.config.maxPositions;
  if (numVirtual + longest > max) {
    fail(
      "usage",
      `${numVirtual} virtual tokens + the longest example's ${longest} tokens = ${numVirtual + longest} positions, but the model has ${max} (max_position_embeddings): lower ${flagOf("numVirtualTokens")} or ${flagOf("maxLength")}`,
      { field: flagOf("numVirtualTokens") },
    );
  }
}
