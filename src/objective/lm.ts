/**
 * The language-model objective: mean cross-entropy of the answer tokens, for the frozen model with an
 * adapter's changes (or none), with the LM head applied only at positions that carry a label (it is the
 * model's largest matmul). Labels follow HF: the token at position t predicts labels[t + 1]; -100 is
 * not counted; a row's first token is predicted only by virtual tokens before it, never by another row.
 *
 * Virtual tokens come in two kinds: embeddings placed before the token embeddings (prompt tuning: they are
 * queries and keys, and the last one predicts the first real token), or a per-layer past of keys/values
 * (prefix tuning, Cartridges: keys only, nothing predicts the first real token). Either way they take
 * positions 0..n-1, are always visible, and the text starts at position n.
 */
import { type Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import * as nn from "../graph/nn.js";
import { fail } from "../util/errors.js";
import type { CausalLM, KV } from "../models/causal-lm.js";
import { type PositionMode, attentionPattern } from "../models/inputs.js";
import { type Batch, IGNORE_INDEX } from "../data/index.js";
import type { Tensor } from "../runtime/session.js";
import type { Adaptation } from "../peft/method.js";

export interface LossGraph {
  /** The loss: a mean over `count` units (labelled tokens for the LM loss). */
  loss: Value;
  /** [B, n + T, d] after the final norm. */
  hidden: Value;
  /** How many units the batch's mean is over (as float): the weight of this batch's mean. */
  count: Value;
  /** Virtual tokens before the text (0 without them). */
  numVirtual: number;
  /** Where they are: "embeds" (before the token embeddings, the default) or "past" (per-layer keys/values). */
  virtualAs: VirtualAs;
}

export type VirtualAs = "embeds" | "past";

/** What `lossFeeds` needs to know of the virtual tokens: a count (embeddings), or a loss graph's. */
export type VirtualTokens = number | Pick<LossGraph, "numVirtual" | "virtualAs">;

/**
 * What the trainer minimises, as a seam: an objective builds its loss from the model's forward (see
 * `forwardGraph`) and declares its own per-batch inputs, which its `feeds` fill. The LM cross-entropy is
 * the default (`lmObjective`); distillation's KL (src/distill) is another. Whatever an objective adds, its
 * loss is a mean over `count` units (tokens, positions), so batches combine weighted by their counts.
 */
export interface Objective {
  /** Recorded in the checkpoint: a resume with another objective is refused. */
  readonly name: string;
  /** Settings that change what is learned (weights, sources of targets), checked on resume like the trainer's. */
  readonly settings?: Readonly<Record<string, unknown>>;
  /** The loss graph of the model with `adaptation` (none: the bare model). */
  graph(lm: CausalLM, adaptation?: Pick<Adaptation, "virtualEmbeds" | "past" | "hooks" | "spliceEmbeds">): LossGraph;
  /** The rows the graph runs for a batch, when they are more than the batch's (a pair's rejected completion); adaptations are fed these too. */
  expand?(batch: Batch): Batch;
  /** Every row `expand` may add, so they are checked against the model's context with the data, before anything runs. */
  readonly extraRows?: readonly { inputIds: readonly number[] }[];
  /** Every feed of `graph`'s own inputs (the text, positions, labels, and whatever the objective declared) for one batch. */
  feeds(batch: Batch<ArrayLike<number>>, graph: LossGraph): Record<string, Tensor>;
}

/** The language-model objective: mean cross-entropy of the labelled tokens. */
export const lmObjective: Objective = {
  name: "lm",
  graph: (lm, adaptation) => lossGraph(lm, adaptation),
  feeds: (batch, graph) => lossFeeds(batch, graph),
};

/** The forward every objective starts from: hidden states, and those at the labelled positions only. */
export interface ForwardGraph {
  /** [B, n + T, d] after the final norm. */
  hidden: Value;
  /** [M, d]: the hidden state at each position that predicts a label, in `lossFeeds`' order (row by row). */
  picked: Value;
  /** [M] int64: the label each picked position predicts. */
  labelTargets: Value;
  /** How many labelled tokens the batch has (as float). */
  count: Value;
  numVirtual: number;
  virtualAs: VirtualAs;
}

/** The model's forward with `adaptation`, over the inputs `lossFeeds` fills; objectives build their losses on it. */
export function forwardGraph(lm: CausalLM, adaptation?: Pick<Adaptation, "virtualEmbeds" | "past" | "hooks" | "spliceEmbeds">): ForwardGraph {
  const ids = o.input("input_ids", "int64", ["batch", "seq"]);
  const virtual = adaptation?.virtualEmbeds;
  const prefix = adaptation?.past;
  if (virtual !== undefined && prefix !== undefined) fail("usage", "an adaptation gives either virtual embeddings or a past, not both", { field: "past" });
  const virtualAs: VirtualAs = prefix === undefined ? "embeds" : "past";
  const numVirtual = virtual !== undefined ? (virtual.shape[1] as number) : prefix !== undefined ? checkPast(lm, prefix) : 0;
  const keys = numVirtual > 0 ? `${numVirtual}+seq` : "seq"; // virtual tokens, then the text
  const queries = virtualAs === "embeds" ? keys : "seq"; // a past has keys, not queries
  const positions = o.input("position_ids", "int64", ["batch", queries]);
  const allowed = o.input("allowed", "bool", ["batch", 1, queries, keys]);
  const labelPositions = o.input("label_positions", "int64", ["labels"]);
  const labelTargets = o.input("label_targets", "int64", ["labels"]);

  const embedded = lm.embed(ids);
  const tokens = adaptation?.spliceEmbeds === undefined ? embedded : adaptation.spliceEmbeds(embedded);
  const inputsEmbeds = virtual === undefined ? tokens : o.concat([virtual, tokens], 1);
  const past = prefix === undefined ? undefined : broadcastPast(prefix, ids);
  const { hidden } = lm.forward({ inputsEmbeds, positions, allowed, past, hooks: adaptation?.hooks });
  const picked = o.gather(o.reshape(hidden, [-1, lm.config.hiddenSize]), labelPositions, 0); // [M, d]: only labelled positions
  const count = o.cast(o.reduceSum(o.cast(o.greater(labelTargets, -1), "int64"), [0]), "float32");
  return { hidden, picked, labelTargets, count, numVirtual, virtualAs };
}

/** The loss graph of the model with `adaptation` (none: the bare model); feed it with `lossFeeds`. */
export function lossGraph(lm: CausalLM, adaptation?: Pick<Adaptation, "virtualEmbeds" | "past" | "hooks" | "spliceEmbeds">): LossGraph {
  const { hidden, picked, labelTargets, count, numVirtual, virtualAs } = forwardGraph(lm, adaptation);
  const loss = nn.crossEntropy(lm.lmHead(picked), labelTargets);
  return { loss, hidden, count, numVirtual, virtualAs };
}

/** A past of batch 1 (one prefix for every row) broadcast over the batch of `ids` [B, T]. */
function broadcastPast(past: readonly KV[], ids: Value): KV[] {
  const rowOf = o.unsqueeze(o.slice(ids, 1, 0, 1), [2, 3]); // [B, 1, 1, 1]: only its shape is used
  return past.map(({ key, value }) => ({ key: o.expandLike(key, rowOf), value: o.expandLike(value, rowOf) }));
}

/** A past must have a [1 or B, kvHeads, n, headDim] pair for every layer; returns n. */
function checkPast(lm: CausalLM, past: readonly KV[]): number {
  const { numLayers, numKvHeads, headDim } = lm.config;
  const n = past[0]?.key.shape[2];
  const fits = (v: Value) => v.shape.length === 4 && v.shape[1] === numKvHeads && v.shape[2] === n && v.shape[3] === headDim;
  if (past.length !== numLayers || typeof n !== "number" || !past.every((kv) => fits(kv.key) && fits(kv.value))) {
    fail("usage", `a past needs ${numLayers} layers of keys and values [1, ${numKvHeads}, n, ${headDim}] with one static n`, { field: "past" });
  }
  return n;
}

/**
 * Feeds for `lossGraph` from a right- or left-padded batch after the virtual tokens (a count means
 * embeddings; pass the loss graph for a past). Positions "row" (default): virtual tokens 0..n-1, then
 * each row's real tokens n, n+1, … wherever its padding sits, so a loss never depends on the batch.
 * "peft": n..n+T-1 over the text for every row, padding included, as PEFT (it passes no position_ids;
 * with a prefix the cache positions start at n); the same for right-padded batches.
 */
export function lossFeeds(batch: Batch<ArrayLike<number>>, virtualTokens: VirtualTokens, mode: PositionMode = "row"): Record<string, Tensor> {
  const { numVirtual, virtualAs } = typeof virtualTokens === "number" ? { numVirtual: virtualTokens, virtualAs: "embeds" } : virtualTokens;
  const { batchSize: B, seqLen: T } = batch;
  const queriesBefore = virtualAs === "embeds" ? numVirtual : 0; // virtual tokens that are queries too
  const L = queriesBefore + T;
  const keyMask: number[][] = [];
  const positions = new BigInt64Array(B * L);
  const labelAt: number[] = [];
  const targets: number[] = [];
  const ids = new BigInt64Array(B * T);
  for (let b = 0; b < B; b++) {
    const real = (t: number) => batch.attentionMask[b * T + t] !== 0;
    keyMask.push([...Array<number>(numVirtual).fill(1), ...Array.from({ length: T }, (_, t) => (real(t) ? 1 : 0))]);
    let seen = 0; // real text tokens so far
    for (let p = 0; p < L; p++) {
      const t = p - queriesBefore; // index in the text, negative for virtual tokens
      const position = t < 0 ? p : mode === "peft" ? numVirtual + t : real(t) ? numVirtual + seen : 0;
      positions[b * L + p] = BigInt(position);
      if (t >= 0 && real(t)) seen++;
    }
    for (let t = 0; t < T; t++) ids[b * T + t] = BigInt(batch.inputIds[b * T + t]);
    // Each real token's label is predicted at the position of the real token (or virtual embedding) before
    // it; a row's first token, without virtual embeddings, has nothing before it and is not predicted.
    let before = queriesBefore - 1;
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
      before = queriesBefore + t;
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
