/**
 * Distillation as a trainer objective (src/objective/lm.ts): the mean over continuation positions of
 * KL(teacher ‖ student), the student being the frozen model with the adapter before the input alone.
 * Each training row is an input followed by one of the teacher's continuations, labelled on the
 * continuation; the objective finds the row's teacher distributions by its tokens, so rows may come in
 * any order, batch and padding.
 *
 * With an LM term, rows of the data's own completions (input then answer, labelled on the answer) train
 * beside them: the loss is then the mean over every labelled position of the KL at a teacher position and
 * `weight` · cross-entropy at a completion token. With a hidden-state weight, each teacher position also
 * adds that weight times the mean squared difference of the final hidden states (kl.ts).
 */
import * as o from "../graph/ops.js";
import { fail } from "../util/errors.js";
import type { Batch, TokenizedExample } from "../data/index.js";
import { IGNORE_INDEX } from "../data/index.js";
import type { Tensor } from "../runtime/session.js";
import type { Value } from "../graph/ir.js";
import type { CausalLM } from "../models/causal-lm.js";
import { type LossGraph, type Objective, forwardGraph, lossFeeds } from "../objective/lm.js";
import { hiddenSquaredError, klSum, klWithLm } from "./kl.js";
import type { TeacherRow, TeacherTargets } from "./teacher.js";

/** The training row of a teacher row: input then continuation, labels on the continuation. */
export function distillExample(row: Pick<TeacherRow, "input" | "continuation">): TokenizedExample {
  return { inputIds: [...row.input, ...row.continuation], labels: [...row.input.map(() => IGNORE_INDEX), ...row.continuation] };
}

const rowKey = (ids: ArrayLike<number>, firstLabel: number) => `${Array.from(ids).join(",")}|${firstLabel}`;

/** The distillation loss graph, and at each position whether the student's most likely token is the teacher's. */
export interface DistillGraph extends LossGraph {
  /** [M] bool: the student's logit for the teacher's top-1 token is its largest (top-1 agreement). */
  top1Agrees: Value;
}

/** The terms beside the KL: the LM term's completion rows (fed `is_teacher` and `lm_weight`), the hidden-state term's weight (fed `teacher_hidden`). */
export interface DistillTerms {
  withLm?: boolean;
  hiddenWeight?: number;
}

/** The loss of `klObjective` for the model with `adaptation`: mean KL over the continuation positions, and the `terms` asked for. */
export function distillGraph(lm: CausalLM, adaptation: Parameters<Objective["graph"]>[1], k: number, vocabSize: number, { withLm = false, hiddenWeight = 0 }: DistillTerms = {}): DistillGraph {
  const f = forwardGraph(lm, adaptation);
  const teacher = {
    topIndices: o.input("teacher_top_indices", "int64", ["labels", k]),
    topLogp: o.input("teacher_top_logp", "float32", ["labels", k]),
    rest: k < vocabSize ? { mask: o.input("teacher_rest", "bool", ["labels", vocabSize]), logp: o.input("teacher_rest_logp", "float32", ["labels"]) } : undefined,
  };
  const logits = lm.lmHead(f.picked); // [M, V]
  const isTeacher = withLm ? o.input("is_teacher", "float32", ["labels"]) : undefined;
  let total = isTeacher !== undefined ? klWithLm(logits, teacher, f.labelTargets, isTeacher, o.input("lm_weight", "float32", ["labels"])) : klSum(logits, teacher);
  if (hiddenWeight > 0) {
    const perPosition = hiddenSquaredError(f.picked, o.input("teacher_hidden", "float32", ["labels", lm.config.hiddenSize]));
    total = o.add(total, o.mul(o.reduceSum(isTeacher === undefined ? perPosition : o.mul(isTeacher, perPosition), [0]), hiddenWeight));
  }
  const loss = o.div(total, f.count);
  const teacherTop1 = o.gatherElements(logits, o.slice(teacher.topIndices, 1, 0, 1), 1); // [M, 1]
  const top1Agrees = o.squeeze(o.equal(teacherTop1, o.reduceMax(logits, [1], true)), [1]);
  return { loss, hidden: f.hidden, count: f.count, numVirtual: f.numVirtual, virtualAs: f.virtualAs, top1Agrees };
}

/** The LM term: rows of the data's completions (these very objects are trained on), and its weight. */
export interface LmTerm {
  rows: readonly TokenizedExample[];
  weight: number;
}

/**
 * `settings` are recorded in checkpoints (e.g. the teacher cache's key), so a resume with other teacher
 * outputs is refused. A `hiddenWeight` above 0 needs targets kept with their hidden states.
 */
export function klObjective(targets: TeacherTargets, settings: Record<string, unknown> = {}, lmTerm?: LmTerm, hiddenWeight = 0): Objective {
  const byKey = new Map(targets.rows.map((r) => [rowKey(distillExample(r).inputIds, r.input.length), r]));
  const completions = new Set(lmTerm?.rows);
  const { k, vocabSize: V } = targets;
  if (hiddenWeight > 0 && targets.rows.some((r) => r.hidden === undefined)) fail("usage", "the hidden-state term needs the teacher's hidden states: compute the teacher's outputs with them (TeacherSettings.hidden)", { field: "hiddenWeight" });
  // Floats per position of the teacher's hidden states (0: none fed).
  const hiddenWidth = hiddenWeight > 0 && targets.rows.length > 0 ? targets.rows[0].hidden!.length / targets.rows[0].continuation.length : 0;
  return {
    name: "distill-kl",
    settings: { ...settings, ...(lmTerm === undefined ? {} : { lmWeight: lmTerm.weight }), ...(hiddenWeight > 0 ? { hiddenWeight } : {}) },
    graph: (lm, adaptation) => distillGraph(lm, adaptation, k, V, { withLm: lmTerm !== undefined, hiddenWeight }),
    feeds(batch, graph) {
      const base = lossFeeds(batch, graph);
      const isCompletion = (b: number) => batch.items !== undefined && completions.has(batch.items[b]);
      const feeds = teacherFeeds(batch, base, byKey, k, k < V ? V : 0, isCompletion, hiddenWidth);
      if (lmTerm === undefined) return { ...base, ...feeds };
      // Positions come row by row (see lossFeeds): each takes its row's kind.
      const L = base.position_ids.dims[1];
      const rows = Array.from(base.label_positions.data as BigInt64Array, (p) => Math.floor(Number(p) / L));
      const isTeacher = Float32Array.from(rows, (b) => (isCompletion(b) ? 0 : 1));
      const lmWeight = Float32Array.from(rows, (b) => (isCompletion(b) ? lmTerm.weight : 0));
      return { ...base, ...feeds, is_teacher: { data: isTeacher, dims: [rows.length] }, lm_weight: { data: lmWeight, dims: [rows.length] } };
    },
  };
}

/**
 * The teacher's distributions (and its hidden states, `hiddenWidth` floats each, unless 0) at the batch's labelled positions, in
 * `lossFeeds`' order (row by row); a completion row's positions get a finite filler (its terms are multiplied by 0).
 */
function teacherFeeds(batch: Batch<ArrayLike<number>>, base: Record<string, Tensor>, byKey: Map<string, TeacherRow>, k: number, restWidth: number, isCompletion: (b: number) => boolean, hiddenWidth: number): Record<string, Tensor> {
  const { batchSize: B, seqLen: T } = batch;
  const L = base.position_ids.dims[1];
  const perRow = new Array<number>(B).fill(0);
  for (const p of base.label_positions.data as BigInt64Array) perRow[Math.floor(Number(p) / L)]++;
  const M = perRow.reduce((a, b) => a + b, 0);
  const indices = new BigInt64Array(M * k);
  const logp = new Float32Array(M * k);
  const restMask = new Uint8Array(M * restWidth).fill(1);
  const restLogp = new Float32Array(restWidth > 0 ? M : 0);
  const hiddenStates = new Float32Array(M * hiddenWidth);
  let m = 0;
  for (let b = 0; b < B; b++) {
    if (perRow[b] === 0) continue;
    if (isCompletion(b)) {
      m += perRow[b]; // filler: indices 0, log-probabilities 0, every token in the rest
      continue;
    }
    const real: number[] = [];
    let firstLabel = -1;
    for (let t = 0; t < T; t++) {
      if (batch.attentionMask[b * T + t] === 0) continue;
      if (firstLabel < 0 && batch.labels[b * T + t] !== IGNORE_INDEX) firstLabel = real.length;
      real.push(batch.inputIds[b * T + t]);
    }
    const row = byKey.get(rowKey(real, firstLabel));
    if (row === undefined || row.continuation.length !== perRow[b]) {
      fail("data", `row ${b} of the batch is not one of the teacher's continuations (labelled on ${perRow[b]} tokens); distillation trains only on rows made from the teacher's outputs`, { field: `labels[${b}]` });
    }
    if (hiddenWidth > 0) hiddenStates.set(row.hidden!, m * hiddenWidth);
    for (let j = 0; j < perRow[b]; j++, m++) {
      for (let i = 0; i < k; i++) {
        indices[m * k + i] = BigInt(row.topIndices[j * k + i]);
        logp[m * k + i] = row.topLogp[j * k + i];
        if (restWidth > 0) restMask[m * restWidth + row.topIndices[j * k + i]] = 0;
      }
      if (restWidth > 0) restLogp[m] = row.restLogp[j];
    }
  }
  const feeds: Record<string, Tensor> = { teacher_top_indices: { data: indices, dims: [M, k] }, teacher_top_logp: { data: logp, dims: [M, k] } };
  if (restWidth > 0) {
    feeds.teacher_rest = { data: restMask, dims: [M, restWidth] };
    feeds.teacher_rest_logp = { data: restLogp, dims: [M] };
  }
  if (hiddenWidth > 0) feeds.teacher_hidden = { data: hiddenStates, dims: [M, hiddenWidth] };
  return feeds;
}
