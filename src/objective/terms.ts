/**
 * The loss terms beyond the plain LM cross-entropy, as graph functions of the model's logits at the
 * labelled positions; each has its gradient checked against finite differences (test/objective/terms).
 *
 * - Unlikelihood (Welleck et al. 2019, "Neural Text Generation with Unlikelihood Training"): for a token
 *   the model should not produce, −log(1 − p(token)), clamped as theirs is so a certain token costs a
 *   finite amount.
 * - DPO (Rafailov et al. 2023, "Direct Preference Optimization"): for a pair, −log σ(β · ((π_c − ref_c) −
 *   (π_r − ref_r))), with π and ref the summed log-probabilities of the chosen and rejected completions
 *   under the trained and the reference model (here the frozen model without the prompt); as TRL's
 *   `sigmoid` loss.
 */
import type { Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";

/** Welleck et al. clamp 1 − p at 1e-5: a token the model is sure of costs at most −log 1e-5. */
const MIN_UNLIKELY = 1e-5;

/** [M]: log p(target) at each labelled position, from logits [M, V] and int64 targets [M]. */
export function tokenLogp(logits: Value, targets: Value): Value {
  const logp = o.logSoftmax(logits, -1);
  return o.squeeze(o.gatherElements(logp, o.unsqueeze(targets, [1]), 1), [1]);
}

/** [M]: −log(1 − p), p = exp(logp), the unlikelihood penalty of each token. */
export function unlikelihood(logp: Value): Value {
  const unlikely = o.sub(1, o.exp(logp));
  return o.neg(o.log(o.where(o.less(unlikely, MIN_UNLIKELY), MIN_UNLIKELY, unlikely)));
}

/** [R]: the sum of `values` [M] over each row's positions, with `rows` [R, M] one-hot (1 where position m is row r's). */
export function rowSums(values: Value, rows: Value): Value {
  return o.squeeze(o.matmul(rows, o.unsqueeze(values, [1])), [1]);
}

/** log σ(x), written as min(x, 0) − log(1 + exp(−|x|)) so neither branch overflows. */
export function logSigmoid(x: Value): Value {
  const negative = o.less(x, 0);
  const minusAbs = o.where(negative, x, o.neg(x));
  return o.sub(o.where(negative, x, 0), o.log(o.add(1, o.exp(minusAbs))));
}

/** [P]: the DPO loss of each pair, from the trained model's summed log-probabilities and the reference's margin ref_c − ref_r. */
export function dpoLoss(chosenLogp: Value, rejectedLogp: Value, referenceMargin: Value, beta: number): Value {
  const margin = o.sub(o.sub(chosenLogp, rejectedLogp), referenceMargin);
  return o.neg(logSigmoid(o.mul(margin, beta)));
}
