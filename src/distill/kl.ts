/**
 * The distillation loss: KL(teacher ‖ student) of next-token distributions, summed over positions.
 *
 * The teacher's distribution p at a position is kept as its k most likely tokens' log-probabilities and,
 * when k is less than the vocabulary, the log of the mass of all the others ("the rest"). The loss is
 * then the KL between the two distributions coarsened to k + 1 outcomes (the top k, and the rest):
 *
 *     Σ_top p_i (log p_i − log q_i)  +  p_rest (log p_rest − log q_rest)
 *
 * which is exact when k covers the vocabulary (no rest) and otherwise a lower bound of the full KL that
 * tightens as k grows (coarsening never increases a KL). Its gradient in the student's logits is
 * q − p on the top k, and q_i · (1 − p_rest / q_rest) on the rest.
 *
 * Optionally, an LM term on given completions joins it position by position (`klWithLm`): each position
 * is either a teacher position (its KL) or a completion token (its cross-entropy, weighted). And a
 * hidden-state term (`hiddenSquaredError`) compares the final hidden states themselves: the logits see
 * them only through the vocabulary's directions (17 of the tiny model's 64), the hidden state whole.
 */
import type { Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";

export interface TeacherValues {
  /** [M, k] int64: the teacher's k most likely tokens at each position, most likely first. */
  topIndices: Value;
  /** [M, k]: their log-probabilities. */
  topLogp: Value;
  /** With k < vocabulary: [M, V] bool, true for the tokens outside the top k, and [M] the log of their mass. */
  rest?: { mask: Value; logp: Value };
}

/** Σ over the M positions of KL(p ‖ q), from the student's logits [M, V]. */
export function klSum(logits: Value, teacher: TeacherValues): Value {
  return o.reduceSum(klPerPosition(o.logSoftmax(logits, -1), teacher), [0]);
}

/**
 * Σ over the M positions of  isTeacher · KL(p ‖ q)  +  lmWeight · −log q(target): `isTeacher` [M] is 1 at
 * a teacher position and 0 at a completion token (whose teacher inputs are any finite filler), `lmWeight`
 * [M] the LM term's weight at a completion token and 0 elsewhere; `targets` [M] int64 the labelled tokens.
 */
export function klWithLm(logits: Value, teacher: TeacherValues, targets: Value, isTeacher: Value, lmWeight: Value): Value {
  const logq = o.logSoftmax(logits, -1); // [M, V]
  const logqTarget = o.squeeze(o.gatherElements(logq, o.unsqueeze(targets, [1]), 1), [1]); // [M]
  return o.reduceSum(o.sub(o.mul(isTeacher, klPerPosition(logq, teacher)), o.mul(lmWeight, logqTarget)), [0]);
}

/** KL(p ‖ q) at each of the M positions [M], from the student's log-probabilities [M, V]. */
function klPerPosition(logq: Value, teacher: TeacherValues): Value {
  const logqTop = o.gatherElements(logq, teacher.topIndices, 1); // [M, k]
  let perPosition: Value = o.reduceSum(o.mul(o.exp(teacher.topLogp), o.sub(teacher.topLogp, logqTop)), [1]); // [M]
  if (teacher.rest !== undefined) {
    // log q_rest = logsumexp of log q over the rest; the top k are pushed far below (exp gives 0) rather than to -inf, which would give NaN gradients.
    const masked = o.where(teacher.rest.mask, logq, -1e4);
    const shift = o.reduceMax(masked, [1], true); // [M, 1]
    const logqRest = o.add(o.squeeze(shift, [1]), o.log(o.reduceSum(o.exp(o.sub(masked, shift)), [1])));
    perPosition = o.add(perPosition, o.mul(o.exp(teacher.rest.logp), o.sub(teacher.rest.logp, logqRest)));
  }
  return perPosition;
}

/** Mean over the hidden size of the squared difference between the student's and the teacher's hidden states [M, d], per position [M]. */
export function hiddenSquaredError(student: Value, teacher: Value): Value {
  const diff = o.sub(student, teacher);
  return o.reduceMean(o.mul(diff, diff), [1]);
}
