// `npm run bench -- profile train|decode`: where the time goes, op by op, with ONNX Runtime's profiler on.
// train: prompt-tuning steps (loss and its gradient to the soft prompt, batch 8 × 128 as the engine bench);
// decode: greedy one-token steps of the engine's decode program (step.ts decodeGraph) at batch 8 and 1, after the
// cache the decode bench's last step reads. Both on the GPT-2-small and SmolLM2-135M
// shapes (random weights). Reports time per ONNX op type, the top nodes, each distinct matrix product's time
// against the same product run alone, the share of wall time spent outside ORT (feeds, copies, JavaScript),
// and peak RSS beside the weights' own bytes. Writes bench/results/profile-<kind>.json.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import * as o from "../src/graph/ops.js";
import type { Value } from "../src/graph/ir.js";
import { grad } from "../src/graph/autodiff.js";
import { buildModel } from "../src/models/build.js";
import type { CausalLM } from "../src/models/causal-lm.js";
import { promptLossFeeds, promptLossGraph } from "../src/peft/prompt-tuning/model.js";
import { type Feeds, Program, type Tensor } from "../src/runtime/session.js";
import { greedy } from "../src/infer/sampling.js";
import { decodeGraph, pastName } from "../src/infer/step.js";
import { Rng } from "../src/util/rng.js";
import { peakRssMb, randomWeights, shapeConfig } from "./common.js";
import { BATCH, TEXT, VIRTUAL, randomBatch } from "./engine.js";

export type ProfileKind = "train" | "decode";
const SHAPES = ["gpt2-small", "smollm2-135m"];
const PRODUCTS = new Set(["MatMul", "Gemm", "FusedMatMul", "MatMulNBits"]);

/** One event of ORT's profile (Chrome trace format): a session phase, or one node's kernel. */
export interface ProfileEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[]; output_type_shape?: Record<string, number[]>[] };
}

export interface ProfileSummary {
  /** model_run events counted, and their total (ORT's own time), in ms. */
  runs: number;
  runMs: number;
  /** Σ kernel time of every node, ms. */
  kernelMs: number;
  byOpType: { op: string; ms: number; calls: number; share: number }[];
  topNodes: { node: string; op: string; ms: number; calls: number }[];
  /** Matrix products grouped by op and shapes: what a product of that shape costs inside the graph. */
  products: { op: string; inputs: number[][]; output: number[]; calls: number; msPerCall: number }[];
}

const shapesOf = (list: Record<string, number[]>[] | undefined) => (list ?? []).map((t) => Object.values(t)[0]);

/** Summarise a profile, leaving out the first `skipRuns` runs (warm-up) and every node event before the next one. */
export function summarizeProfile(events: readonly ProfileEvent[], { skipRuns = 0, top = 10 } = {}): ProfileSummary {
  const runs = events.filter((e) => e.cat === "Session" && e.name === "model_run").sort((a, b) => a.ts - b.ts);
  const counted = runs.slice(skipRuns);
  const from = counted[0]?.ts ?? Number.POSITIVE_INFINITY;
  const nodes = events.filter((e) => e.cat === "Node" && e.name.endsWith("_kernel_time") && e.ts >= from);
  const group = <T>(key: (e: ProfileEvent) => string, make: (e: ProfileEvent) => T) => {
    const out = new Map<string, T & { us: number; calls: number }>();
    for (const e of nodes) {
      const k = key(e);
      const g = out.get(k) ?? { ...make(e), us: 0, calls: 0 };
      g.us += e.dur;
      g.calls += 1;
      out.set(k, g);
    }
    return [...out.values()].sort((a, b) => b.us - a.us);
  };
  const kernelUs = nodes.reduce((s, e) => s + e.dur, 0);
  const opOf = (e: ProfileEvent) => e.args?.op_name ?? "?";
  const byOpType = group(opOf, (e) => ({ op: opOf(e) })).map(({ op, us, calls }) => ({ op, ms: us / 1000, calls, share: us / kernelUs }));
  const topNodes = group((e) => e.name, (e) => ({ node: e.name.replace(/_kernel_time$/, ""), op: opOf(e) }))
    .slice(0, top)
    .map(({ node, op, us, calls }) => ({ node, op, ms: us / 1000, calls }));
  const products = group(
    (e) => `${opOf(e)} ${JSON.stringify(shapesOf(e.args?.input_type_shape))}`,
    (e) => ({ op: opOf(e), inputs: shapesOf(e.args?.input_type_shape), output: shapesOf(e.args?.output_type_shape)[0] ?? [] }),
  )
    .filter((g) => PRODUCTS.has(g.op))
    .map(({ op, inputs, output, us, calls }) => ({ op, inputs, output, calls, msPerCall: us / calls / 1000 }));
  return { runs: counted.length, runMs: counted.reduce((s, e) => s + e.dur, 0) / 1000, kernelMs: kernelUs / 1000, byOpType, topNodes, products };
}

/** Run `step` `runs` times on a program compiled with the profiler on; the profile's summary (first run left out) and the wall time. */
async function profiled(outputs: Record<string, Value>, step: (program: Program) => Promise<void>, runs: number): Promise<{ summary: ProfileSummary; wallMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), "softprompt-profile-"));
  try {
    const program = await Program.compile(outputs, { enableProfiling: true, profileFilePrefix: join(dir, "ort") });
    await step(program); // warm-up: first-run allocations
    const t0 = performance.now();
    for (let i = 1; i < runs; i++) await step(program);
    const wallMs = performance.now() - t0;
    const events = JSON.parse(readFileSync(await program.endProfiling(), "utf8")) as ProfileEvent[];
    return { summary: summarizeProfile(events, { skipRuns: 1 }), wallMs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The transposes that make op(a) @ op(b) give `output` (ORT's profile records shapes, not attributes). */
function transposesFor(a: number[], b: number[], output: number[]): { transA: boolean; transB: boolean } | undefined {
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      const [m, k1] = transA ? [a.at(-1), a.at(-2)] : [a.at(-2), a.at(-1)];
      const [k2, n] = transB ? [b.at(-1), b.at(-2)] : [b.at(-2), b.at(-1)];
      if (k1 === k2 && m === output.at(-2) && n === output.at(-1)) return { transA, transB };
    }
  }
  return undefined;
}

/** The same product alone in a graph of its own: kernel ms per call, from its own profile (20 runs). */
async function productAlone(p: ProfileSummary["products"][number]): Promise<number | undefined> {
  const [a, b] = p.inputs;
  const trans = a !== undefined && b !== undefined ? transposesFor(a, b, p.output) : undefined;
  if (trans === undefined || p.op === "MatMulNBits") return undefined;
  const rng = new Rng(2);
  const feed = (dims: number[]): Tensor => ({ data: Float32Array.from({ length: dims.reduce((x, y) => x * y, 1) }, () => rng.normal()), dims });
  const [x, y] = [o.input("a", "float32", a), o.input("b", "float32", b)];
  const product = p.op === "Gemm" && a.length === 2 && b.length === 2 ? o.gemm(x, y, trans) : o.matmul(x, y, trans);
  const feeds = { a: feed(a), b: feed(b) };
  const { summary } = await profiled({ y: product }, async (program) => void (await program.run(feeds)), 21);
  return summary.products[0]?.msPerCall;
}

/** The loss and its gradient to a soft prompt, as the engine bench measures them. */
function trainCase(lm: CausalLM) {
  const graph = promptLossGraph(lm, VIRTUAL);
  const [gPrompt] = grad(graph.loss, [graph.prompt!]);
  const rng = new Rng(3);
  const feeds: Feeds = {
    ...lm.weights.feeds(),
    ...promptLossFeeds(randomBatch(lm.config.vocabSize), VIRTUAL),
    prompt: { data: Float32Array.from({ length: VIRTUAL * lm.config.hiddenSize }, () => rng.normal() * 0.02), dims: [VIRTUAL, lm.config.hiddenSize] },
  };
  return { outputs: { loss: graph.loss, grad: gPrompt }, step: async (program: Program) => void (await program.run(feeds)), runs: 4, what: `batch ${BATCH} × (${VIRTUAL} virtual + ${TEXT} text) tokens` };
}

/** Cached columns of the decode case: the decode bench's 20 virtual + 16 input tokens, and the 16th new one's step. */
const FILLED = 20 + 16 + 15;

/**
 * Greedy decode steps as the engine runs them (step.ts decodeGraph): `batch` rows, each one token after a held cache of
 * the capacity the engine gives FILLED columns, written in place; each step's token is the next one's input.
 */
function decodeCase(lm: CausalLM, batch: number) {
  const { numLayers, numKvHeads, headDim, vocabSize } = lm.config;
  const capacity = 2 ** Math.ceil(Math.log2(FILLED + 1));
  const rng = new Rng(4);
  const cache = () => ({ data: Float32Array.from({ length: batch * numKvHeads * capacity * headDim }, () => rng.normal() * 0.5), dims: [batch, numKvHeads, capacity, headDim] });
  const past: Feeds = Object.fromEntries(Array.from({ length: numLayers }, (_, i) => [[pastName(i, "key"), cache()], [pastName(i, "value"), cache()]]).flat());
  const allowed = new Uint8Array(batch * (capacity + 1));
  for (let b = 0; b < batch; b++) allowed.fill(1, b * (capacity + 1), b * (capacity + 1) + FILLED).fill(1, (b + 1) * (capacity + 1) - 1, (b + 1) * (capacity + 1));
  const tokens = Array.from({ length: batch }, (_, b) => b + 1);
  const step = async (program: Program) => {
    const out = await program.run({
      ...lm.weights.feeds(),
      ...past,
      input_ids: { data: BigInt64Array.from(tokens, BigInt), dims: [batch, 1] },
      position_ids: { data: new BigInt64Array(batch).fill(BigInt(FILLED)), dims: [batch, 1] },
      allowed: { data: allowed, dims: [batch, 1, 1, capacity + 1] },
    });
    const logits = out.logits.data as Float32Array;
    tokens.forEach((_, b) => (tokens[b] = greedy(logits.subarray(b * vocabSize, (b + 1) * vocabSize))));
  };
  return { outputs: decodeGraph(lm, capacity), step, runs: 17, what: `${batch} rows, greedy, ${FILLED} of ${capacity} cached columns (the engine's decode program), 16 steps` };
}

async function profileShape(shape: string, kind: ProfileKind, batch: number) {
  const config = shapeConfig(shape);
  const lm = buildModel(config, randomWeights(config));
  const c = kind === "train" ? trainCase(lm) : decodeCase(lm, batch);
  const { summary, wallMs } = await profiled(c.outputs, c.step, c.runs);
  const products = [];
  for (const p of summary.products) {
    const aloneMs = await productAlone(p);
    products.push({ ...p, calls: p.calls / summary.runs, aloneMsPerCall: aloneMs, inGraphOverAlone: aloneMs === undefined ? undefined : p.msPerCall / aloneMs });
  }
  const productMs = summary.products.reduce((s, p) => s + p.msPerCall * p.calls, 0);
  const weightsMb = lm.weights.names().reduce((s, n) => s + lm.weights.tensor(n).data.byteLength, 0) / 2 ** 20;
  return {
    shape,
    batch,
    what: c.what,
    ms_per_run: { wall: wallMs / summary.runs, ort: summary.runMs / summary.runs, kernels: summary.kernelMs / summary.runs },
    // Wall time outside ORT's run: wrapping feeds, copying outputs out, and the JavaScript between runs (argmax, next feeds).
    outside_ort_share: 1 - summary.runMs / wallMs,
    products_share_of_kernels: productMs / summary.kernelMs,
    by_op_type: summary.byOpType.map((g) => ({ ...g, ms: g.ms / summary.runs, calls: g.calls / summary.runs })),
    top_nodes: summary.topNodes.map((n) => ({ ...n, ms: n.ms / summary.runs, calls: n.calls / summary.runs })),
    products,
    weights_mb: weightsMb,
    peak_rss_mb: peakRssMb(),
  };
}

export async function benchProfile(kind: string | undefined) {
  if (kind !== "train" && kind !== "decode") throw new Error(`profile needs a kind: train or decode, got ${kind ?? "none"}`);
  const shapes = [];
  // Decode at the decode bench's two batches; training at the engine bench's one.
  const batches = kind === "decode" ? [8, 1] : [BATCH];
  for (const shape of SHAPES) for (const batch of batches) shapes.push(await profileShape(shape, kind, batch));
  return { kind, shapes, load_average: loadavg() };
}
