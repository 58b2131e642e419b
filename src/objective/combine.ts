/**
 * One objective of weighted terms, each weight a `train` flag:
 *
 *     loss = ( lmWeight · Σ_positive-tokens w_row · e^(reward_row / τ) · −log p
 *            + unlikelihoodWeight · Σ_negative-tokens w_row · −log(1 − p)
 *            + dpoWeight · Σ_pairs w_pair · DPO(pair)
 *            + verbalizerWeight · Σ_labelled-rows CE(label | verbalizer words) ) / units
 *
 * A row is negative when it says `"negative": true`, and a pair's rejected completion is a negative row of
 * its own (so unlikelihood trains on pairs too); a labelled row runs once per verbalizer word instead of
 * as itself (src/objective/verbalizer.ts). `units` count each term's own: the labelled tokens that carry a
 * token term (positive rows when lmWeight > 0, negative ones when unlikelihoodWeight > 0), one per pair
 * under DPO, one per labelled row under the verbalizer. A count of the batch's own units, so batches
 * combine by counts and the dataset's loss does not depend on batch size or padding. The reward weighting
 * is reward-weighted regression's exp(r / τ) (Peters & Schaal 2007): always positive, so a low reward
 * learns less, never unlearns.
 */
import { z } from "zod";
import type { Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import { fail } from "../util/errors.js";
import { type Batch, type DataTokenizer, type Example, type TokenizedExample, makeBatches, rowSignals } from "../data/index.js";
import type { CausalLM } from "../models/causal-lm.js";
import type { Verbalizer } from "../eval/classify.js";
import type { Tensor } from "../runtime/session.js";
import { type LossGraph, type Objective, forwardGraph, lossFeeds } from "./lm.js";
import { dpoLoss, rowSums, tokenLogp, unlikelihood } from "./terms.js";
import { type Pairs, preparePairs, rowMatrix } from "./pairs.js";
import { type Verbalized, type VerbalizedRow, prepareVerbalized, verbalizerLoss } from "./verbalizer.js";

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
  /** Cross-entropy over the verbalizer's words on labelled rows (default 0; 1 when a verbalizer is given). */
  verbalizerWeight: number;
}

export const DEFAULT_WEIGHTS: ObjectiveWeights = { lmWeight: 1, unlikelihoodWeight: 0, dpoWeight: 0, dpoBeta: 0.1, rewardTemperature: 1, verbalizerWeight: 0 };

/** The `train` flags of the weights (each `--flag <x>`), with what each takes. */
export const OBJECTIVE_FLAGS: readonly { key: keyof ObjectiveWeights; flag: string; description: string; schema: z.ZodNumber }[] = [
  { key: "lmWeight", flag: "--lm-weight", description: "weight of the LM loss on positive rows (default 1)", schema: z.number().nonnegative() },
  { key: "unlikelihoodWeight", flag: "--unlikelihood-weight", description: 'weight of the unlikelihood penalty on "negative": true rows and pairs\' rejected completions (default 0)', schema: z.number().nonnegative() },
  { key: "dpoWeight", flag: "--dpo-weight", description: "weight of DPO on chosen/rejected pairs, the frozen model without the prompt as reference (default 0)", schema: z.number().nonnegative() },
  { key: "dpoBeta", flag: "--dpo-beta", description: "DPO's β (default 0.1)", schema: z.number().positive() },
  { key: "rewardTemperature", flag: "--reward-temperature", description: 'τ of the reward weighting e^(reward/τ) of rows with a "reward" (default 1)', schema: z.number().positive() },
  { key: "verbalizerWeight", flag: "--verbalizer-weight", description: "weight of the cross-entropy over --verbalizer words on labelled rows (default 1 with --verbalizer)", schema: z.number().nonnegative() },
];

/** The weights differ from the plain LM loss's. */
function needsCombined(weights: ObjectiveWeights): boolean {
  return weights.lmWeight !== 1 || weights.unlikelihoodWeight !== 0 || weights.dpoWeight !== 0 || weights.verbalizerWeight !== 0;
}

/**
 * The weighted objective; `pairs` (see preparePairs) gives each pair row its rejected row and reference
 * margin, `verbalized` (see prepareVerbalized) each labelled row its candidate rows; `settings` are recorded
 * beside the weights (the verbalizer's words).
 */
export function combinedObjective(weights: ObjectiveWeights, pairs: Pairs = new Map(), verbalized?: Verbalized, settings: Record<string, unknown> = {}): Objective {
  checkWeights(weights);
  const { lmWeight, unlikelihoodWeight, dpoWeight, dpoBeta, rewardTemperature, verbalizerWeight } = weights;
  if (verbalizerWeight > 0 && verbalized === undefined) fail("usage", "the verbalizer's cross-entropy needs a verbalizer (--verbalizer FILE)", { field: "--verbalizer-weight" });
  const rejectedOf = new Map([...pairs.values()].map((p) => [p.rejected, p]));
  const labelled = verbalizerWeight > 0 ? verbalized!.rows : new Map<TokenizedExample, VerbalizedRow>();
  const ownerOf = new Map([...labelled.values()].flatMap((v) => v.candidates.map((c) => [c, v] as const)));

  /** Each pair among the rows: its row (the chosen side) and its rejected completion's row. */
  const pairsOf = (items: readonly TokenizedExample[]) =>
    items.flatMap((item, row) => {
      const pair = pairs.get(item);
      return pair === undefined ? [] : [{ row, rejectedRow: items.indexOf(pair.rejected), margin: pair.referenceMargin, weight: rowSignals(item.fields).weight }];
    });

  return {
    name: "combined",
    settings: { ...weights, ...settings },
    expand: dpoWeight > 0 || unlikelihoodWeight > 0 || labelled.size > 0 ? (batch) => expandRows(batch, pairs, labelled) : undefined,
    extraRows: [...rejectedOf.keys(), ...ownerOf.keys()],
    graph(lm, adaptation): LossGraph {
      const f = forwardGraph(lm, adaptation);
      const logp = tokenLogp(lm.lmHead(f.picked), f.labelTargets); // [M]
      const units = o.input("objective_units", "float32", []);
      let total: Value = o.reduceSum(o.mul(o.input("positive_weight", "float32", ["labels"]), o.neg(logp)), [0]);
      if (unlikelihoodWeight > 0) total = o.add(total, o.reduceSum(o.mul(o.input("negative_weight", "float32", ["labels"]), unlikelihood(logp)), [0]));
      if (dpoWeight > 0) {
        const chosen = rowSums(logp, o.input("chosen_rows", "float32", ["pairs", "labels"]));
        const rejected = rowSums(logp, o.input("rejected_rows", "float32", ["pairs", "labels"]));
        const perPair = o.mul(dpoLoss(chosen, rejected, o.input("reference_margin", "float32", ["pairs"]), dpoBeta), o.input("pair_weight", "float32", ["pairs"]));
        total = o.add(total, o.mul(o.reduceSum(perPair, [0]), dpoWeight));
      }
      if (labelled.size > 0) {
        const words = verbalized!.groups.at(-1)![1];
        const ce = verbalizerLoss(logp, o.input("candidate_rows", "float32", ["labelled", words, "labels"]), verbalized!.groups, o.input("verbalizer_targets", "int64", ["labelled"]));
        total = o.add(total, o.mul(ce, verbalizerWeight));
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
        if (ownerOf.has(item)) return { positive: 0, negative: 0, counted: false }; // scored by the verbalizer term only
        const { weight, reward, negative: marked } = rowSignals(item.fields); // a rejected row has its pair's fields
        const negative = marked || rejectedOf.has(item);
        const rewarded = reward === undefined ? 1 : Math.exp(reward / rewardTemperature);
        return { positive: negative ? 0 : lmWeight * weight * rewarded, negative: negative ? unlikelihoodWeight * weight : 0, counted: negative ? unlikelihoodWeight > 0 : lmWeight > 0 };
      });
      const positive = Float32Array.from(positions, (r) => rowWeights[r].positive);
      const negative = Float32Array.from(positions, (r) => rowWeights[r].negative);
      const rowPairs = dpoWeight > 0 ? pairsOf(items) : [];
      const candidates = items.flatMap((item, row) => (ownerOf.has(item) ? [row] : []));
      const words = verbalized?.groups.at(-1)?.[1] ?? 1;
      const targets = candidates.filter((_, k) => k % words === 0).map((row) => ownerOf.get(items[row])!.target); // each labelled row's, in order
      const units = positions.filter((r) => rowWeights[r].counted).length + rowPairs.length + targets.length;
      const feeds: Record<string, Tensor> = { ...base, positive_weight: { data: positive, dims: [positions.length] }, objective_units: { data: Float32Array.of(units), dims: [] } };
      if (unlikelihoodWeight > 0) feeds.negative_weight = { data: negative, dims: [positions.length] };
      if (dpoWeight > 0) {
        const index = (side: "row" | "rejectedRow") => new Map(rowPairs.map((p, k) => [p[side], k]));
        const chosenAt = index("row");
        const rejectedAt = index("rejectedRow");
        feeds.chosen_rows = rowMatrix(base, rowPairs.length, (r) => chosenAt.get(r) ?? -1);
        feeds.rejected_rows = rowMatrix(base, rowPairs.length, (r) => rejectedAt.get(r) ?? -1);
        feeds.reference_margin = { data: Float32Array.from(rowPairs, (p) => p.margin), dims: [rowPairs.length] };
        feeds.pair_weight = { data: Float32Array.from(rowPairs, (p) => p.weight), dims: [rowPairs.length] };
      }
      if (labelled.size > 0) {
        const at = new Map(candidates.map((row, k) => [row, k]));
        const means = rowMeans(rowMatrix(base, candidates.length, (r) => at.get(r) ?? -1));
        feeds.candidate_rows = { data: means.data, dims: [targets.length, words, means.dims[1]] };
        feeds.verbalizer_targets = { data: BigInt64Array.from(targets, BigInt), dims: [targets.length] };
      }
      return feeds;
    },
  };
}

/**
 * The rows the graph runs: the batch's own, less its labelled rows, then each pair's rejected completion,
 * then each labelled row's candidates (one per verbalizer word, row by row, so they reshape to [rows, words]).
 */
function expandRows(batch: Batch, pairs: Pairs, labelled: ReadonlyMap<TokenizedExample, VerbalizedRow>): Batch {
  const items = rowsOf(batch);
  const rejected = items.flatMap((item) => pairs.get(item)?.rejected ?? []);
  const candidates = items.flatMap((item) => labelled.get(item)?.candidates ?? []);
  if (rejected.length === 0 && candidates.length === 0) return batch;
  const rows = [...items.filter((item) => !labelled.has(item)), ...rejected, ...candidates];
  return makeBatches(rows, { batchSize: rows.length, padTokenId: padOf(batch), padSide: "right" })[0];
}

/** Each row of a one-hot matrix divided by its count: a product with it is a mean instead of a sum. */
function rowMeans(matrix: { data: Float32Array; dims: number[] }): { data: Float32Array; dims: number[] } {
  const [rows, cols] = matrix.dims;
  for (let r = 0; r < rows; r++) {
    const row = matrix.data.subarray(r * cols, (r + 1) * cols);
    const n = row.reduce((a, b) => a + b, 0);
    if (n > 0) row.forEach((v, i) => (row[i] = v / n));
  }
  return matrix;
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
  if (weights.lmWeight === 0 && weights.unlikelihoodWeight === 0 && weights.dpoWeight === 0 && weights.verbalizerWeight === 0) fail("usage", "every term's weight is 0: nothing to train", { field: "lmWeight" });
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
  /** Labelled rows are trained by the cross-entropy over these words (weight 1 unless given). */
  verbalizer?: { file: string; words: Verbalizer };
}): Promise<Objective | undefined> {
  const signalled = run.examples.some(({ fields }) => fields !== undefined && ("negative" in fields || "weight" in fields || "reward" in fields));
  const weights = run.verbalizer !== undefined && run.weights.verbalizerWeight === 0 ? { ...run.weights, verbalizerWeight: 1 } : run.weights;
  if (!needsCombined(weights) && !signalled) return undefined;
  checkWeights(weights);
  const { dpoWeight, unlikelihoodWeight } = weights;
  // Without the penalty a negative row would carry no term at all, and a batch of them nothing to learn.
  const negative = unlikelihoodWeight > 0 ? undefined : run.examples.find((x) => rowSignals(x.fields).negative);
  if (negative !== undefined) fail("usage", 'the row is "negative" but --unlikelihood-weight is 0: set a weight for the penalty, or leave negative rows out', { ...negative.source, field: "negative" });
  const pairs = dpoWeight > 0 || unlikelihoodWeight > 0
    ? await preparePairs(run.examples, run.items, run.tokenizer, { maxLength: run.maxLength, reference: dpoWeight > 0 ? run.lm : undefined, requireAll: dpoWeight > 0 ? "--dpo-weight" : undefined })
    : undefined;
  const verbalized = run.verbalizer === undefined ? undefined : prepareVerbalized(run.examples, run.items, run.tokenizer, run.verbalizer.words, { file: run.verbalizer.file, maxLength: run.maxLength });
  return combinedObjective(weights, pairs, verbalized, run.verbalizer === undefined ? {} : { verbalizer: Object.fromEntries(run.verbalizer.words) });
}
