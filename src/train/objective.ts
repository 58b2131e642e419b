/**
 * The language-model objective for soft-prompt training: mean cross-entropy of the answer tokens,
 * with the LM head applied only at positions that carry a label (it is the model's largest matmul).
 * Labels follow HF: logits at position t predict labels[t + 1]; -100 is not counted.
 */
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import type { CausalLM } from "../models/causal-lm.js";
import { arangePositions, attentionPattern } from "../models/inputs.js";
import { prependPrompt, promptIndexFor } from "../peft/prompt-tuning/model.js";
import { IGNORE_INDEX } from "../data/tokenize.js";
import type { Tensor } from "../runtime/session.js";

/** A padded batch: row-major [batchSize, seqLen] ids, mask (1 = real) and labels (-100 = not learned). */
export interface TokenBatch {
  inputIds: ArrayLike<number>;
  attentionMask: ArrayLike<number>;
  labels: ArrayLike<number>;
  batchSize: number;
  seqLen: number;
}

export interface PromptLossGraph {
  /** The trainable prompt table [tables·n, d] (one prompt: [n, d]); absent when n = 0. */
  prompt?: Value;
  /** Mean cross-entropy over labelled tokens. */
  loss: Value;
  /** [B, n + T, d] after the final norm. */
  hidden: Value;
  /** How many labelled tokens the batch has (as float): the weight of this batch's mean. */
  count: Value;
}

/** The loss graph of a prompt-tuned model (n = 0: the bare model); feed it with `promptLossFeeds`. */
export function promptLossGraph(lm: CausalLM, numVirtual: number, tables = 1): PromptLossGraph {
  const d = lm.config.hiddenSize;
  const ids = o.input("input_ids", "int64", ["batch", "seq"]);
  const total = numVirtual > 0 ? `${numVirtual}+seq` : "seq"; // virtual tokens, then the text
  const positions = o.input("position_ids", "int64", ["batch", total]);
  const allowed = o.input("allowed", "bool", ["batch", 1, total, total]);
  const labelPositions = o.input("label_positions", "int64", ["labels"]);
  const labelTargets = o.input("label_targets", "int64", ["labels"]);

  let prompt: Value | undefined;
  let inputsEmbeds = lm.embed(ids);
  if (numVirtual > 0) {
    prompt = o.input("prompt", "float32", [tables * numVirtual, d]);
    inputsEmbeds = prependPrompt(prompt, o.input("prompt_index", "int64", ["batch", numVirtual]), inputsEmbeds);
  }
  const { hidden } = lm.forward({ inputsEmbeds, positions, allowed });
  const picked = o.gather(o.reshape(hidden, [-1, d]), labelPositions, 0); // [M, d]: only labelled positions
  const loss = nn.crossEntropy(lm.lmHead(picked), labelTargets);
  const count = o.cast(o.reduceSum(o.cast(o.greater(labelTargets, -1), "int64"), [0]), "float32");
  return { prompt, loss, hidden, count };
}

/** Feeds for `promptLossGraph` from a right- or left-padded batch; row b uses prompt `which[b]` (default 0). */
export function promptLossFeeds(batch: TokenBatch, numVirtual: number, which?: readonly number[]): Record<string, Tensor> {
  const { batchSize: B, seqLen: T } = batch;
  const L = numVirtual + T;
  const keyMask: number[][] = [];
  const positions: number[] = [];
  const targets: number[] = [];
  const ids = new BigInt64Array(B * T);
  for (let b = 0; b < B; b++) {
    keyMask.push([...Array<number>(numVirtual).fill(1), ...Array.from({ length: T }, (_, t) => batch.attentionMask[b * T + t])]);
    for (let t = 0; t < T; t++) ids[b * T + t] = BigInt(batch.inputIds[b * T + t]);
    // Full-sequence position p (virtual tokens first) predicts the label at p + 1.
    for (let p = numVirtual - 1; p < L - 1; p++) {
      const label = batch.labels[b * T + (p + 1 - numVirtual)];
      if (label === IGNORE_INDEX) continue;
      positions.push(b * L + p);
      targets.push(label);
    }
  }
  return {
    input_ids: { data: ids, dims: [B, T] },
    ...(numVirtual > 0 ? { prompt_index: promptIndexFor(which ?? Array<number>(B).fill(0), numVirtual) } : {}),
    // PEFT passes no position_ids with prompt tuning: 0..n+T-1 for every row, padding included.
    position_ids: arangePositions(B, L),
    allowed: attentionPattern(keyMask, L),
    label_positions: { data: BigInt64Array.from(positions, BigInt), dims: [positions.length] },
    label_targets: { data: BigInt64Array.from(targets, BigInt), dims: [targets.length] },
  };
}
