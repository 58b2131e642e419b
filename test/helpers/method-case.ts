// Running any registered method's adaptation on a reference case (the golden batch), as PEFT runs it:
// loss, logits and the gradient of every trained tensor, with PEFT's positions; and comparing within
// the golden tolerances.
import { expect } from "vitest";
import * as o from "../../src/graph/ops.js";
import { grad } from "../../src/graph/autodiff.js";
import { Program, type Tensor } from "../../src/runtime/session.js";
import { lossFeeds, lossGraph } from "../../src/objective/lm.js";
import { paramInputs } from "../../src/eval/loss.js";
import type { Batch } from "../../src/data/index.js";
import type { Params, PeftConfigBase, PeftMethod } from "../../src/peft/method.js";
import type { CausalLM } from "../../src/models/causal-lm.js";
import { maxAbsDiff, type readTensors } from "./golden.js";

export type Case = Awaited<ReturnType<typeof readTensors>>;

/** The case's batch (input_ids, attention_mask, labels [B, T]), with each row's task when given. */
export function caseBatch(golden: Case, tasks?: string[]): Batch<number[]> {
  const [B, T] = golden.get("input_ids")!.shape;
  const ints = (name: string) => golden.get(name)!.data as number[];
  return { inputIds: ints("input_ids"), attentionMask: ints("attention_mask"), labels: ints("labels"), batchSize: B, seqLen: T, ...(tasks ? { tasks } : {}) };
}

/** The tensors stored as `<prefix><name>`, by name. */
export function caseParams(golden: Case, prefix = "param."): Params {
  const params: Params = new Map();
  for (const [name, t] of golden) if (name.startsWith(prefix)) params.set(name.slice(prefix.length), { shape: t.shape, data: t.data as Float32Array });
  return params;
}

/** Loss, logits [B, n + T, V] and (with `withGrads`) d loss / d each param as `grad.<name>`, with PEFT's positions. */
export async function runMethod(
  lm: CausalLM,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  method: PeftMethod<any, any>,
  config: PeftConfigBase,
  params: Params,
  batch: Batch<number[]>,
  withGrads: boolean,
): Promise<Record<string, Tensor>> {
  const inputs = paramInputs(params);
  const adaptation = method.adapt(config, inputs, lm);
  const graph = lossGraph(lm, adaptation);
  const names = withGrads ? [...inputs.keys()] : [];
  const grads = withGrads ? grad(graph.loss, names.map((n) => inputs.get(n)!)) : [];
  const logits = lm.lmHead(o.reshape(graph.hidden, [-1, lm.config.hiddenSize]));
  const program = await Program.compile({ loss: graph.loss, logits, ...Object.fromEntries(names.map((n, i) => [`grad.${n}`, grads[i]])) });
  const feeds = Object.fromEntries([...params].map(([n, p]) => [n, { data: p.data, dims: p.shape }]));
  return program.run({ ...lm.weights.feeds(), ...feeds, ...adaptation.feeds(batch), ...lossFeeds(batch, graph, "peft") });
}

export const lossOf = (out: Record<string, Tensor>) => (out.loss.data as Float32Array)[0];

/** |got − want| ≤ atol + rtol·|want| everywhere. */
export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number, label = ""): void {
  expect(got.length, label).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) - rtol * Math.abs(want[i]));
  expect(worst, label).toBeLessThanOrEqual(atol);
}

/** Logits within 1e-4 on the valid positions: the n virtual tokens, then real tokens. */
export function expectLogits(got: Float32Array, golden: Case, numVirtual: number): void {
  const [, T] = golden.get("input_ids")!.shape;
  const mask = golden.get("attention_mask")!.data as number[];
  const want = golden.get("logits")!;
  expect(maxAbsDiff(got, want.data as Float32Array, want.shape, (r, p) => p < numVirtual || mask[r * T + (p - numVirtual)] === 1)).toBeLessThan(1e-4);
}
