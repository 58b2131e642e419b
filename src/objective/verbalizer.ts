/**
 * Cross-entropy over verbalizer words, for classification rows {"prompt" or "text", "label"}: each row runs
 * once per word (its input, then the word, labelled on the word), a word's score is its mean token
 * log-probability (as `softprompt classify` scores it), a label's score the log-sum-exp of its words'
 * (a smooth form of classify's best word), and the loss −log softmax(label scores)[the row's label].
 */
import type { Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import { fail } from "../util/errors.js";
import { type DataTokenizer, type Example, type TokenizedExample, IGNORE_INDEX, rowSignals } from "../data/index.js";
import { type Verbalizer, verbalizerTokens } from "../eval/classify.js";

export interface VerbalizedRow {
  /** One row per word, in the verbalizer's order (label by label). */
  candidates: TokenizedExample[];
  /** The index of the row's label. */
  target: number;
}

/** The words of each label as index ranges [start, end) over the candidates. */
export type WordGroups = readonly (readonly [number, number])[];

export interface Verbalized {
  rows: ReadonlyMap<TokenizedExample, VerbalizedRow>;
  groups: WordGroups;
}

/** Each labelled row's candidate rows (`items` are `examples` tokenized, index for index); unlabelled rows are left as they are. */
export function prepareVerbalized(examples: readonly Example[], items: readonly TokenizedExample[], tokenizer: DataTokenizer, verbalizer: Verbalizer, options: { file: string; maxLength: number }): Verbalized {
  const words = verbalizerTokens(verbalizer, tokenizer, options.file);
  const labels = [...verbalizer.keys()];
  const groups: [number, number][] = [];
  words.reduce((start, ws) => (groups.push([start, start + ws.length]), start + ws.length), 0);
  const rows = new Map<TokenizedExample, VerbalizedRow>();
  examples.forEach((example, i) => {
    const label = rowSignals(example.fields, example.source).label;
    if (label === undefined) return;
    const target = labels.indexOf(label);
    if (target < 0) fail("data", `the label ${JSON.stringify(label)} is not in the verbalizer (${labels.map((l) => JSON.stringify(l)).join(", ")})`, { ...example.source, field: "label" });
    const input = example.kind === "prompt" ? example.prompt : example.kind === "text" ? example.text : fail("data", 'a classification row is {"prompt" or "text", "label"}, not a chat', { ...example.source, field: "messages" });
    const inputIds = [...tokenizer.specialPrefixIds, ...tokenizer.encode(input, { addSpecialTokens: false })];
    const candidates = words.flat().map((word) => {
      const kept = inputIds.slice(Math.max(0, inputIds.length + word.length - options.maxLength)); // cut the input from the left, as prompts are
      return { inputIds: [...kept, ...word], labels: [...kept.map(() => IGNORE_INDEX), ...word], task: items[i].task, fields: items[i].fields };
    });
    rows.set(items[i], { candidates, target });
  });
  return { rows, groups };
}

/**
 * Σ over N rows of −log softmax(label scores)[target]: `logp` [M] token log-probabilities, `candidates`
 * [N, C, M] (1/length where position m is row n's word c's, so a product is the mean), `targets` [N] int64.
 */
export function verbalizerLoss(logp: Value, candidates: Value, groups: WordGroups, targets: Value): Value {
  const scores = o.squeeze(o.matmul(candidates, o.unsqueeze(logp, [1])), [2]); // [N, C]
  const labelScores = o.concat(groups.map(([start, end]) => logSumExp(o.slice(scores, 1, start, end))), 1); // [N, labels]
  const picked = o.gatherElements(o.logSoftmax(labelScores, 1), o.unsqueeze(targets, [1]), 1); // [N, 1]
  return o.neg(o.reduceSum(picked, [0, 1]));
}

/** [N, 1]: log Σ exp over axis 1, shifted by the row's max (the shift's gradient cancels). */
function logSumExp(x: Value): Value {
  const max = o.reduceMax(x, [1], true);
  return o.add(max, o.log(o.reduceSum(o.exp(o.sub(x, max)), [1], true)));
}
