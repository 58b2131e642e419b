/**
 * LoRA at inference, unmerged: several adapters in one batch, each row with its own (or none), as
 * S-LoRA (Sheng et al. 2023) and Punica (Chen et al. 2023) serve them. For every module some row's
 * adapter targets, the batch's adapters are stacked — A [K, R, in], B [K, out, R], slot 0 all zeros for
 * rows without one, ranks zero-padded to the largest R (zero rows of A and columns of B add nothing) —
 * and each row gathers its own slot: y_b += (x_b · A_bᵀ) · B_bᵀ. The scale (alpha/r or alpha/√r) is
 * folded into B before stacking, so the graph needs no per-row scale.
 *
 * Also here: the projections a model's forward passes through its `linear` hook, found by tracing the
 * forward once (names, widths, and how each weight is stored), which target matching and merging use.
 */
import { fail } from "../util/errors.js";
import type { Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import type { CausalLM, ForwardHooks } from "../models/causal-lm.js";
import type { Tensor } from "../runtime/session.js";

/** One target module's factors: A [rank, in] and B [out, rank] with the adapter's scale folded in, row-major. */
export interface LoraFactors {
  /** The module's canonical name (its weight's less `.weight`), as the forward's `linear` hook names it. */
  module: string;
  rank: number;
  a: Float32Array;
  b: Float32Array;
}

/** A LoRA adapter served unmerged: its factors per target module; `id` names it (and its version) in caches and errors. */
export interface LoraPrompt {
  id: string;
  modules: readonly LoraFactors[];
}

/** A projection of the model: its module name, widths, and how its weight is held ([out, in] as nn.Linear, or [in, out]). */
export interface Projection {
  module: string;
  inFeatures: number;
  outFeatures: number;
  layout: "in_out" | "out_in";
}

const traced = new WeakMap<CausalLM, Projection[]>();

/** Every projection of the model's blocks, in forward order (traced once per model: graph building only, nothing runs). */
export function projections(lm: CausalLM): Projection[] {
  let found = traced.get(lm);
  if (found === undefined) {
    const seen: Projection[] = [];
    lm.forward({
      inputsEmbeds: o.input("embeds", "float32", [1, 1, lm.config.hiddenSize]),
      positions: o.input("positions", "int64", [1, 1]),
      allowed: o.input("allowed", "bool", [1, 1, 1, 1]),
      hooks: {
        linear: (module, x, y) => {
          const [inFeatures, outFeatures] = [x.shape.at(-1), y.shape.at(-1)] as number[];
          seen.push({ module, inFeatures, outFeatures, layout: weightLayout(lm, module, y) });
          return y;
        },
      },
    });
    traced.set(lm, (found = seen));
  }
  return found;
}

/** Read off the graph: the product that consumes the module's weight uses it transposed ([out, in]) or as held ([in, out]); as the left operand (a decode step's W·xᵀ) it is [out, in]. */
function weightLayout(lm: CausalLM, module: string, y: Value): Projection["layout"] {
  const weight = lm.weights.get(`${module}.weight`);
  const queue: Value[] = [y];
  for (let i = 0; i < queue.length && i < 64; i++) {
    const v = queue[i];
    if ((v.op === "gemm" || v.op === "matmul") && v.inputs[1] === weight) return (v.attrs as { transB: boolean }).transB ? "out_in" : "in_out";
    if (v.op === "matmul" && v.inputs[0] === weight) return "out_in";
    queue.push(...v.inputs);
  }
  return fail("weights", `cannot tell how the weight of ${module} is stored: no product consumes it`, { tensor: `${module}.weight` });
}

export function isLoraPrompt(prompt: object): prompt is LoraPrompt {
  return "modules" in prompt;
}

/** Every factor must belong to a projection of this model, with [rank, in] and [out, rank] values, finite. */
export function checkLoraPrompt(lm: CausalLM, lora: LoraPrompt, field = "prompt"): void {
  if (typeof lora.id !== "string" || lora.id.length === 0) fail("usage", "a LoRA adapter needs a non-empty id (its cache key)", { field });
  if (!Array.isArray(lora.modules) || lora.modules.length === 0) fail("usage", `LoRA adapter "${lora.id}" has no target modules`, { field: `${field}.modules` });
  const byName = new Map(projections(lm).map((p) => [p.module, p]));
  const seen = new Set<string>();
  lora.modules.forEach((f, i) => {
    const at = `${field}.modules[${i}]`;
    const p = byName.get(f.module);
    if (p === undefined) fail("usage", `LoRA adapter "${lora.id}" targets ${JSON.stringify(f.module)}, which is not a projection of this model; it has ${describeModules(lm)}`, { field: `${at}.module` });
    if (seen.has(f.module)) fail("usage", `LoRA adapter "${lora.id}" lists ${f.module} twice`, { field: `${at}.module` });
    seen.add(f.module);
    if (!(Number.isInteger(f.rank) && f.rank >= 1)) fail("usage", `rank must be an integer >= 1, got ${f.rank}`, { field: `${at}.rank` });
    for (const [kind, size, shape] of [["a", f.rank * p.inFeatures, `[${f.rank}, ${p.inFeatures}]`], ["b", p.outFeatures * f.rank, `[${p.outFeatures}, ${f.rank}]`]] as const) {
      const values = f[kind];
      if (!(values instanceof Float32Array) || values.length !== size) fail("usage", `${f.module}'s ${kind.toUpperCase()} must be a Float32Array ${shape} (${size} values)`, { field: `${at}.${kind}` });
      if (!values.every(Number.isFinite)) fail("usage", `${f.module}'s ${kind.toUpperCase()} holds a non-finite value`, { field: `${at}.${kind}` });
    }
  });
}

/** The model's projections, by the last part of their names, for messages: `q_proj, k_proj, … (e.g. model.layers.0.self_attn.q_proj)`. */
export function describeModules(lm: CausalLM): string {
  const all = projections(lm);
  const suffixes = [...new Set(all.map((p) => p.module.split(".").pop()!))];
  return `${suffixes.join(", ")} (e.g. ${all[0]?.module ?? "none"})`;
}

/** The modules any of these adapters target, in forward order: the step program is built for this set. */
export function loraModules(lm: CausalLM, loras: readonly (LoraPrompt | undefined)[]): Projection[] {
  const targeted = new Set(loras.flatMap((l) => l?.modules.map((f) => f.module) ?? []));
  return projections(lm).filter((p) => targeted.has(p.module));
}

export const loraIndexName = "lora.index";
const stackName = (module: string, kind: "A" | "B") => `lora.${module}.${kind}`;

/** Forward hooks over the stacked adapters of `modules`: graph inputs A [K, R, in], B [K, out, R] per module and each row's slot [batch]. */
export function batchedLoraHooks(modules: readonly Projection[]): ForwardHooks {
  const slot = o.input(loraIndexName, "int64", ["batch"]);
  const stacks = new Map(
    modules.map((p) => [
      p.module,
      { a: o.input(stackName(p.module, "A"), "float32", ["adapters", "rank", p.inFeatures]), b: o.input(stackName(p.module, "B"), "float32", ["adapters", p.outFeatures, "rank"]) },
    ]),
  );
  return {
    linear(module, x, y) {
      const s = stacks.get(module);
      if (s === undefined) return y;
      const down = o.matmul(x, o.gather(s.a, slot, 0), { transB: true }); // [B, T, in] @ [B, R, in]ᵀ → [B, T, R]
      return o.add(y, o.matmul(down, o.gather(s.b, slot, 0), { transB: true })); // [B, T, R] @ [B, out, R]ᵀ → [B, T, out]
    },
  };
}

/** The stacks of a set of adapters (slot 0 zeros, then each adapter in order) for `modules`. */
export function loraStacks(adapters: readonly LoraPrompt[], modules: readonly Projection[]): Record<string, Tensor> {
  const K = adapters.length + 1;
  const R = Math.max(1, ...adapters.flatMap((l) => l.modules.map((f) => f.rank)));
  const feeds: Record<string, Tensor> = {};
  for (const p of modules) {
    const a = new Float32Array(K * R * p.inFeatures);
    const b = new Float32Array(K * p.outFeatures * R);
    adapters.forEach((l, i) => {
      const f = l.modules.find((m) => m.module === p.module);
      if (f === undefined) return; // this adapter leaves the module alone: zeros
      const k = i + 1;
      a.set(f.a, k * R * p.inFeatures); // rows 0..r-1 of [R, in]
      for (let row = 0; row < p.outFeatures; row++) b.set(f.b.subarray(row * f.rank, (row + 1) * f.rank), (k * p.outFeatures + row) * R); // columns 0..r-1 of [out, R]
    });
    feeds[stackName(p.module, "A")] = { data: a, dims: [K, R, p.inFeatures] };
    feeds[stackName(p.module, "B")] = { data: b, dims: [K, p.outFeatures, R] };
  }
  return feeds;
}

/** What a batch with LoRA rows adds to a step: the modules its program hooks (also the program's name) and the feeds. */
export interface LoraBatch {
  modules: Projection[];
  /** Names the program variant: programs are compiled once per module set. */
  key: string;
  feeds: Record<string, Tensor>;
}

/**
 * Per-row LoRA for one model's batches. The stacks are memoised per set of adapters (a running batch
 * keeps the same set for many steps), the few most recent sets kept; only the slots are built per step.
 */
export class LoraBatcher {
  private readonly memo = new Map<string, { adapters: LoraPrompt[]; stacks: Record<string, Tensor> }>();

  constructor(
    readonly lm: CausalLM,
    readonly maxEntries = 8,
  ) {}

  /** The batch's LoRA feeds, or undefined when no row has an adapter (the plain programs then run). */
  batch(rows: readonly (LoraPrompt | undefined)[]): LoraBatch | undefined {
    const adapters = [...new Set(rows.filter((l): l is LoraPrompt => l !== undefined))];
    if (adapters.length === 0) return undefined;
    const modules = loraModules(this.lm, adapters);
    const key = `lora[${modules.map((p) => p.module).join(",")}]`;
    const memoKey = `${key}|${adapters.map((l) => l.id).join("|")}`;
    let hit = this.memo.get(memoKey);
    this.memo.delete(memoKey);
    // Ids name adapters, but only the very same objects reuse stacks (an id given new values is restacked).
    if (hit === undefined || hit.adapters.some((l, i) => l !== adapters[i])) hit = { adapters, stacks: loraStacks(adapters, modules) };
    this.memo.set(memoKey, hit); // most recently used goes last
    while (this.memo.size > this.maxEntries) this.memo.delete(this.memo.keys().next().value!);
    const slots = BigInt64Array.from(rows, (l) => BigInt(l === undefined ? 0 : adapters.indexOf(l) + 1));
    return { modules, key, feeds: { ...hit.stacks, [loraIndexName]: { data: slots, dims: [rows.length] } } };
  }
}
