/**
 * Preference pairs made ready for training: each pair row (its chosen completion is the row's own) gets its
 * rejected completion tokenized as a row of its own, and, for DPO, the reference margin ref_c − ref_r of the
 * frozen model without the prompt, computed once here (the reference never changes, so no step reruns it).
 */
import { fail, SoftpromptError } from "../util/errors.js";
import type { CausalLM } from "../models/causal-lm.js";
import { Program } from "../runtime/session.js";
import * as o from "../graph/ops.js";
import { type DataTokenizer, type Example, type TokenizedExample, makeBatches, rowSignals, tokenizeExample } from "../data/index.js";
import { forwardGraph, lossFeeds } from "./lm.js";
import { rowSums, tokenLogp } from "./terms.js";

export interface PairRow {
  /** The prompt with the rejected completion, labelled on the completion. */
  rejected: TokenizedExample;
  /** ref_c − ref_r: summed log-probabilities of the chosen minus the rejected completion under the reference (0 when not computed). */
  referenceMargin: number;
}

/** Each pair row's rejected side, keyed by the row (the same objects the trainer batches). */
export type Pairs = ReadonlyMap<TokenizedExample, PairRow>;

/**
 * The rejected rows of every pair in `examples` (tokenized as `items`, index for index); with `reference`,
 * their reference margins under that model. With `requireAll`, a row that is not a pair fails naming its line.
 */
export async function preparePairs(
  examples: readonly Example[],
  items: readonly TokenizedExample[],
  tokenizer: DataTokenizer,
  options: { maxLength: number; reference?: CausalLM; requireAll?: string },
): Promise<Pairs> {
  const pairs = new Map<TokenizedExample, PairRow>();
  examples.forEach((example, i) => {
    const pair = rowSignals(example.fields, example.source).pair;
    if (pair === undefined) {
      if (options.requireAll !== undefined) fail("data", `is not a preference pair; ${options.requireAll} trains on {"prompt","chosen","rejected"} rows only`, { ...example.source, field: "chosen" });
      return;
    }
    const prompt = example.kind === "prompt" ? example.prompt : "";
    pairs.set(items[i], { rejected: tokenizeRejected({ kind: "prompt", prompt, completion: pair.rejected, source: example.source, task: example.task, fields: example.fields }, tokenizer, options.maxLength), referenceMargin: 0 });
  });
  if (options.reference !== undefined && pairs.size > 0) await referenceMargins(options.reference, pairs);
  return pairs;
}

/** The rejected completion as a row; its tokenizing errors name the "rejected" field. */
function tokenizeRejected(example: Example, tokenizer: DataTokenizer, maxLength: number): TokenizedExample {
  try {
    const { truncated: _, ...row } = tokenizeExample(example, tokenizer, { maxLength });
    return row;
  } catch (err) {
    if (err instanceof SoftpromptError && err.place.field === "completion") {
      fail(err.code, err.reason.replace("the completion", "the rejected completion"), { ...err.place, field: "rejected" });
    }
    throw err;
  }
}

/** Fill each pair's reference margin: the bare model's summed log-probabilities of both completions, a few pairs at a time. */
async function referenceMargins(lm: CausalLM, pairs: Map<TokenizedExample, PairRow>): Promise<void> {
  const f = forwardGraph(lm);
  const rows = o.input("rows", "float32", ["rows", "labels"]);
  const program = await Program.compile({ logp: rowSums(tokenLogp(lm.lmHead(f.picked), f.labelTargets), rows) });
  const entries = [...pairs];
  const PAIRS_PER_RUN = 16;
  for (let first = 0; first < entries.length; first += PAIRS_PER_RUN) {
    const chunk = entries.slice(first, first + PAIRS_PER_RUN);
    const [batch] = makeBatches([...chunk.map(([chosen]) => chosen), ...chunk.map(([, p]) => p.rejected)], { batchSize: 2 * chunk.length, padTokenId: 0, padSide: "right" });
    const feeds = lossFeeds(batch, 0);
    const logp = (await program.run({ ...lm.weights.feeds(), ...feeds, rows: rowMatrix(feeds, 2 * chunk.length) })).logp.data as Float32Array;
    chunk.forEach(([, p], k) => (p.referenceMargin = logp[k] - logp[chunk.length + k]));
  }
}

/** [R, M] one-hot: 1 where labelled position m belongs to row r (positions come row by row, as `lossFeeds` gives them). */
export function rowMatrix(feeds: ReturnType<typeof lossFeeds>, numRows: number, rowsOf: (row: number) => number = (r) => r): { data: Float32Array; dims: number[] } {
  const L = feeds.position_ids.dims[1];
  const positions = feeds.label_positions.data as BigInt64Array;
  const M = positions.length;
  const data = new Float32Array(numRows * M);
  positions.forEach((p, m) => {
    const r = rowsOf(Math.floor(Number(p) / L));
    if (r >= 0) data[r * M + m] = 1;
  });
  return { data, dims: [numRows, M] };
}
