/**
 * What a student kept of its teacher, on held-out inputs: greedy exact match with the teacher's own
 * greedy continuation, next-token top-1 agreement and mean KL(teacher ‖ student) along that
 * continuation.
 */
import * as o from "../graph/ops.js";
import type { CausalLM } from "../models/causal-lm.js";
import { type Tokenizer, paddingId } from "../tokenizer/index.js";
import { makeBatches } from "../data/index.js";
import { Program } from "../runtime/session.js";
import { generate, idsOnly, type AdapterPrompt } from "../infer/generate.js";
import type { Adapter } from "../peft/adapter.js";
import { paramInputs } from "../eval/loss.js";
import { distillExample, distillGraph, klObjective } from "./objective.js";
import type { TeacherTargets } from "./teacher.js";

export interface Agreement {
  /** Share of held-out inputs whose greedy continuation is the teacher's, token for token (EOS included). */
  greedy: number;
  /** Share of continuation positions where the most likely next token is the teacher's. */
  top1: number;
  /** Mean KL(teacher ‖ student) per continuation position, in nats (over the teacher's top k and the rest). */
  meanKl: number;
}

/** A trained adapter and what inference uses of it; none: the bare model. */
export type Student = { adapter: Pick<Adapter, "method" | "config" | "params">; prompt: AdapterPrompt } | undefined;

/** `heldOut`: the teacher's greedy continuations and distributions on held-out inputs. */
export async function agreementWith(lm: CausalLM, tokenizer: Tokenizer, heldOut: TeacherTargets, student: Student, batchSize = 8): Promise<Agreement> {
  const { rows } = heldOut;
  const maxNewTokens = Math.max(...rows.map((r) => r.continuation.length));
  const generated = await generate(lm, undefined, rows.map((r) => ({ inputIds: r.input, prompt: student?.prompt, maxNewTokens })), idsOnly(tokenizer));
  const greedy = generated.filter((g, i) => sameIds(g.ids, rows[i].continuation)).length / rows.length;

  const adapter = student?.adapter;
  const inputs = adapter === undefined ? undefined : paramInputs(adapter.params);
  const adaptation = adapter === undefined ? undefined : adapter.method.adapt(adapter.config, inputs!, lm);
  const graph = distillGraph(lm, adaptation, heldOut.k, heldOut.vocabSize);
  const agreed = o.reduceSum(o.cast(o.cast(graph.top1Agrees, "int64"), "float32"), [0]);
  const program = await Program.compile({ loss: graph.loss, count: graph.count, agreed });
  const objective = klObjective(heldOut);
  const fixed = { ...lm.weights.feeds(), ...Object.fromEntries([...(adapter?.params ?? [])].map(([n, p]) => [n, { data: p.data, dims: p.shape }])) };
  let klTotal = 0;
  let agreedTotal = 0;
  let positions = 0;
  for (const batch of makeBatches(rows.map(distillExample), { batchSize, padTokenId: paddingId(tokenizer), padSide: "right" })) {
    const out = await program.run({ ...fixed, ...(adaptation?.feeds(batch) ?? {}), ...objective.feeds(batch, graph) });
    const count = (out.count.data as Float32Array)[0];
    klTotal += (out.loss.data as Float32Array)[0] * count;
    agreedTotal += (out.agreed.data as Float32Array)[0];
    positions += count;
  }
  return { greedy, top1: agreedTotal / positions, meanKl: klTotal / positions };
}

const sameIds = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
