/**
 * One objective of weighted terms, each weight a `train` flag:
 *
 *     loss = ( lmWeight · Σ_positive-tokens w_row · e^(reward_row / τ) · −log p
 *            + unlikelihoodWeight · Σ_negative-tokens w_row · −log(1 − p)
 *            + dpoWeight · Σ_pairs DPO(pair) ) / units
 *
 * A row is negative when it says `"negative": true`, and a pair's rejected completion is a negative row of
 * its own (so unlikelihood trains on pairs too). `units` are the labelled tokens that carry a token term
 * (positive rows when lmWeight > 0, negative ones when unlikelihoodWeight > 0), or the pairs when no token
 * term is on: either way a count of the batch's own units, so batches combine by counts and the dataset's
 * loss does not depend on batch size or padding. The reward weighting is reward-weighted regression's
 * exp(r / τ) (Peters & Schaal 2007): always positive, so a low reward learns less, never unlearns.
 */
import { z } from "zod";
import type { Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import { fail } from "../util/errors.js";
import { type Batch, type DataTokenizer, type Example, type TokenizedExample, makeBatches, rowSignals } from "../data/index.js";
import type { CausalLM } from "../models/causal-lm.js";
import type { Tensor } from "../runtime/session.js";
import { type LossGraph, type Objective, forwardGraph, lossFeeds } from "./lm.js";
import { dpoLoss, rowSums, tokenLogp, unlikelihood } from "./terms.js";
import { type Pairs, preparePairs, rowMatrix } from "./pairs.js";

export interface ObjectiveWeights {
  /** The LM cross-entropy of positive rows (default 1). */
  lmWeight: number;
  /** Unlikelihood of negative rows and of pairs' rejected completions (default 0). */
  unlikelihoodWeight: number;
  /** DPO on preference pairs against the frozen model without the prompt (default 0). */
  dpoWeight: number;
  /** DPO's β: how far from the reference the margin may go (default 0.1, as TRL). */
  dpoBeta: number;
  /** τ of the reward weighting e^(reward/τ) (default 1). */
  rewardTemperature: number;
}

export const DEFAULT_WEIGHTS: ObjectiveWeights = { lmWeight: 1, unlikelihoodWeight: 0, dpoWeight: 0, dpoBeta: 0.1, rewardTemperature: 1 };

/** The `train` flags of the weights (each `--flag <x>`), with what each takes. */
export const OBJECTIVE_FLAGS: readonly { key: keyof ObjectiveWeights; flag: string; description: string; schema: z.ZodNumber }[] = [
  { key: "lmWeight", flag: "--lm-weight", description: "weight of the LM loss on positive rows (default 1)", schema: z.number().nonnegative() },
  { key: "unlikelihoodWeight", flag: "--unlikelihood-weight", description: 'weight of the unlikelihood penalty on "negative": true rows and pairs\' rejected completions (default 0)', schema: z.number().nonnegative() },
  { key: "dpoWeight", flag: "--dpo-weight", description: "weight of DPO on chosen/rejected pairs, the frozen model without the prompt as reference (default 0)", schema: z.number().nonnegative() },
  { key: "dpoBeta", flag: "--dpo-beta", description: "DPO's β (default 0.1)", schema: z.number().positive() },
  { key: "rewardTemperature", flag: "--reward-temperature", description: 'τ of the reward weighting e^(reward/τ) of rows with a "reward" (default 1)', schema: z.number().positive() },
];

/** The weights differ from the plain LM loss's, or the data carries signals the plain loss would ignore. */
export function needsCombined(weights: ObjectiveWeights): boolean {
  return weights.lmWeight !== 1 || weights.unlikelihoodWeight !== 0 || weights.dpoWeight !== 0;
}

/** The weighted objective; `pairs` (see preparePairs) gives each pair row its rejected row and reference margin. */
export function combinedObjective(weights: ObjectiveWeights, pairs: Pairs = new Map()): Objective {
  checkWeights(weights);
  const { lmWeight, unlikelihoodWeight, dpoWeight, dpoBeta, rewardTemperature } = weights;
  const tokenTerms = lmWeight > 0 || unlikelihoodWeight > 0;
  const withRejected = dpoWeight > 0 || unlikelihoodWeight > 0;
  const rejectedOf = new Map([...pairs.values()].map((p) => [p.rejected, p]));

  /** Each row's pair (P of them): the row itself is the chosen side, `rejectedRow` the rejected. */
  const pairsOf = (batch: Batch<ArrayLike<number>>) => {
    const items = rowsOf(batch);
    const B = items.findIndex((x) => rejectedOf.has(x));
    const chosen = B < 0 ? items : items.slice(0, B);
    return chosen.flatMap((item, row) => {
      const pair = pairs.get(item);
      return pair === undefined ? [] : [{ row, rejectedRow: items.indexOf(pair.rejected), margin: pair.referenceMargin }];
    });
  };

  return {
    name: "combined",
    settings: { ...weights },
    expand: withRejected ? (batch) => withRejectedRows(batch, pairs) : undefined,
    graph(lm, adaptation): LossGraph {
      const f = forwardGraph(lm, adaptation);
      const logp = tokenLogp(lm.lmHead(f.picked), f.labelTargets); // [M]
      const units = o.input("objective_units", "float32", []);
      let total: Value = o.reduceSum(o.mul(o.input("positive_weight", "float32", ["labels"]), o.neg(logp)), [0]);
      if (unlikelihoodWeight > 0) total = o.add(total, o.reduceSum(o.mul(o.input("negative_weight", "float32", ["labels"]), unlikelihood(logp)), [0]));
      if (dpoWeight > 0) {
        const chosen = rowSums(logp, o.input("chosen_rows", "float32", ["pairs", "labels"]));
        const rejected = rowSums(logp, o.input("rejected_rows", "float32", ["pairs", "labels"]));
        total = o.add(total, o.mul(o.reduceSum(dpoLoss(chosen, rejected, o.input("reference_margin", "float32", ["pairs"]), dpoBeta), [0]), dpoWeight));
      }
      return { loss: o.div(total, units), hidden: f.hidden, count: units, numVirtual: f.numVirtual, virtualAs: f.virtualAs };
    },
    feeds(batch, graph) {
      const base = lossFeeds(batch, graph);
      const items = rowsOf(batch);
      // Each row's weights, spread over its labelled tokens (positions come row by row).
      const L = base.position_ids.dims[1];
      const positions = Array.from(base.label_positions.data as BigInt64Array, (p) => Math.floor(Number(p) / L));
      const rowWeights = items.map((item) => {
        const { weight, reward, negative: marked } = rowSignals(item.fields); // a rejected row has its pair's fields
        const negative = marked || rejectedOf.has(item);
        const rewarded = reward === undefined ? 1 : Math.exp(reward / rewardTemperature);
        return { positive: negative ? 0 : lmWeight * weight * rewarded, negative: negative ? unlikelihoodWeight * weight : 0, counted: negative ? unlikelihoodWeight > 0 : lmWeight > 0 };
      });
      const positive = Float32Array.from(positions, (r) => rowWeights[r].positive);
      const negative = Float32Array.from(positions, (r) => rowWeights[r].negative);
      const rowPairs = dpoWeight > 0 ? pairsOf(batch) : [];
      const units = tokenTerms ? positions.filter((r) => rowWeights[r].counted).length : rowPairs.length;
      const feeds: Record<string, Tensor> = { ...base, positive_weight: { data: positive, dims: [positions.length] }, objective_units: { data: Float32Array.of(units), dims: [] } };
      if (unlikelihoodWeight > 0) feeds.negative_weight = { data: negative, dims: [positions.length] };
      if (dpoWeight > 0) {
        const index = (side: "row" | "rejectedRow") => new Map(rowPairs.map((p, k) => [p[side], k]));
        const chosenAt = index("row");
        const rejectedAt = index("rejectedRow");
        feeds.chosen_rows = rowMatrix(base, rowPairs.length, (r) => chosenAt.get(r) ?? -1);
        feeds.rejected_rows = rowMatrix(base, rowPairs.length, (r) => rejectedAt.get(r) ?? -1);
        feeds.reference_margin = { data: Float32Array.from(rowPairs, (p) => p.margin), dims: [rowPairs.length] };
      }
      return feeds;
    },
  };
}

/** The batch with each pair row's rejected completion appended as a row of its own (same padding side, same task). */
function withRejectedRows(batch: Batch, pairs: Pairs): Batch {
  const items = rowsOf(batch);
  const rejected = items.flatMap((item) => pairs.get(item)?.rejected ?? []);
  if (rejected.length === 0) return batch;
  const padTokenId = padOf(batch);
  return makeBatches([...items, ...rejected], { batchSize: items.length + rejected.length, padTokenId, padSide: "right" })[0];
}

/** The id the batch pads with (padding is masked, so any id does; this keeps the batch as it was made). */
function padOf(batch: Batch): number {
  const at = batch.attentionMask.findIndex((m) => m === 0);
  return at < 0 ? 0 : batch.inputIds[at];
}

function rowsOf(batch: Batch<ArrayLike<number>>): readonly TokenizedExample[] {
  return batch.items ?? fail("usage", "the combined objective reads each row's signals from the batch's items; make batches with makeBatches");
}

function checkWeights(weights: ObjectiveWeights): void {
  for (const [name, value] of Object.entries(weights)) {
    if (!Number.isFinite(value) || value < 0) fail("usage", `expected a finite number ≥ 0, got ${value}`, { field: name });
  }
  if (weights.dpoBeta <= 0) fail("usage", `DPO's β must be positive, got ${weights.dpoBeta}`, { field: "dpoBeta" });
  if (weights.rewardTemperature <= 0) fail("usage", `the reward temperature must be positive, got ${weights.rewardTemperature}`, { field: "rewardTemperature" });
  if (weights.lmWeight === 0 && weights.unlikelihoodWeight === 0 && weights.dpoWeight === 0) fail("usage", "every term's weight is 0: nothing to train", { field: "lmWeight" });
}

/** Split the objective's weights (ObjectiveWeights' keys, each optional) from the other training settings. */
export function objectiveWeightsOf<T extends Record<string, unknown>>(settings: T): [ObjectiveWeights, Omit<T, keyof ObjectiveWeights>] {
  const weights = { ...DEFAULT_WEIGHTS };
  const rest: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(settings)) {
    if (!(key in DEFAULT_WEIGHTS)) rest[key] = value;
    else if (value !== undefined) weights[key as keyof ObjectiveWeights] = typeof value === "number" ? value : fail("usage", `expected a number, got ${JSON.stringify(value)}`, { field: key });
  }
  return [weights, rest as Omit<T, keyof ObjectiveWeights>];
}

/**
 * The objective a run's data and weights call for: undefined (the plain LM loss, as before) unless a weight
 * is set or a row carries a signal (negative, weight, reward), or pairs are to be trained as pairs.
 * Pairs are prepared here, before anything is written: DPO needs every row to be one.
 */
export async function trainingObjective(run: {
  lm: CausalLM;
  tokenizer: DataTokenizer;
  weights: ObjectiveWeights;
  maxLength: number;
  /** Every training and validation example, and its tokenized row, index for index. */
  examples: readonly Example[];
  items: readonly TokenizedExample[];
}): Promise<Objective | undefined> {
  const signalled = run.examples.some(({ fields }) => fields !== undefined && ("negative" in fields || "weight" in fields || "reward" in fields));
  if (!needsCombined(run.weights) && !signalled) return undefined;
  checkWeights(run.weights);
  const { dpoWeight, unlikelihoodWeight } = run.weights;
  // Without the penalty a negative row would carry no term at all, and a batch of them nothing to learn.
  const negative = unlikelihoodWeight > 0 ? undefined : run.examples.find((x) => rowSignals(x.fields).negative);
  if (negative !== undefined) fail("usage", 'the row is "negative" but --unlikelihood-weight is 0: set a weight for the penalty, or leave negative rows out', { ...negative.source, field: "negative" });
  const pairs = dpoWeight > 0 || unlikelihoodWeight > 0
    ? await preparePairs(run.examples, run.items, run.tokenizer, { maxLength: run.maxLength, reference: dpoWeight > 0 ? run.lm : undefined, requireAll: dpoWeight > 0 ? "--dpo-weight" : undefined })
    : undefined;
  return combinedObjective(run.weights, pairs);
}
