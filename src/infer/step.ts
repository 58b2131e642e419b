/**
 * The compiled programs of inference, one set per model, built once and reused:
 *  - prompt: a soft prompt's embeddings alone → its keys/values and the logits after its last token;
 *  - prefill: the left-padded token rows, with no past → logits at the last column and the presents;
 *  - step: token rows after a past (the prompts' cache, or everything so far) → the same outputs.
 *    All dims but the model's are symbolic, so this one graph is both the prefill after soft prompts
 *    (seq = padded length);
 *  - decode: one token per row after a KV cache of a fixed capacity that the engine keeps on the host
 *    (KV.held): attention reads the cache beside the new keys without joining them, and
 *    the presents are only the new column, so a step copies neither the cache in the graph nor all of
 *    it back. One program per capacity (the engine grows the cache in doubling chunks);
 *  - held prefill: the same after soft prompts whose keys/values the engine has written into a new cache
 *    block: token rows of any length, whose presents are only their own columns (the prompts' columns are
 *    neither fed twice nor copied back).
 * Batches with LoRA rows run a variant of prefill/step per set of targeted modules, whose projections
 * add each row's own adapter (lora.ts).
 */
import * as o from "../graph/ops.js";
import type { Value } from "../graph/ir.js";
import type { CausalLM, ForwardHooks, KV } from "../models/causal-lm.js";
import { Program, type ProgramOptions } from "../runtime/session.js";
import { type LoraBatch, batchedLoraHooks } from "./lora.js";

export const pastName = (layer: number, kind: "key" | "value") => `past.${layer}.${kind}`;
export const presentName = (layer: number, kind: "key" | "value") => `present.${layer}.${kind}`;

const programs = new WeakMap<CausalLM, Map<string, Promise<Program>>>();

/**
 * Generation's programs run without ORT's memory arena (see ProgramOptions.memoryArena): measured on GPT-2 small, its
 * peak RSS 20 MB lower and its prefill and decode steps as fast; scoring keeps it (20-29% slower without, 16 rows of 124 tokens).
 */
const GENERATION: ProgramOptions = { memoryArena: false };

/** The compiled program of one kind for a model (compiled on first use); with `lora`, its variant for the batch's LoRA modules. */
export function stepProgram(lm: CausalLM, kind: "prefill" | "step", lora?: Pick<LoraBatch, "modules" | "key">): Promise<Program> {
  if (lora === undefined) return programFor(lm, kind, () => stepGraph(lm, kind === "step"), GENERATION);
  return programFor(lm, `${kind}+${lora.key}`, () => stepGraph(lm, kind === "step", batchedLoraHooks(lora.modules)), GENERATION);
}

/** The decode program after a cache of `capacity` columns (compiled on first use); with `lora`, its variant. */
export function decodeProgram(lm: CausalLM, capacity: number, lora?: Pick<LoraBatch, "modules" | "key">): Promise<Program> {
  const hooks = lora === undefined ? undefined : batchedLoraHooks(lora.modules);
  return programFor(lm, `decode${capacity}${lora === undefined ? "" : `+${lora.key}`}`, () => decodeGraph(lm, capacity, hooks), GENERATION);
}

/** The prefill of token rows after a held cache of `capacity` columns (compiled on first use); with `lora`, its variant. */
export function heldPrefillProgram(lm: CausalLM, capacity: number, lora?: Pick<LoraBatch, "modules" | "key">): Promise<Program> {
  const hooks = lora === undefined ? undefined : batchedLoraHooks(lora.modules);
  return programFor(lm, `held-prefill${capacity}${lora === undefined ? "" : `+${lora.key}`}`, () => heldGraph(lm, capacity, "seq", hooks), GENERATION);
}

export function promptProgram(lm: CausalLM): Promise<Program> {
  return programFor(lm, "prompt", () => promptGraph(lm), GENERATION);
}

/** A model's program named `kind`, built and compiled by `build` the first time it is asked for. */
export function programFor(lm: CausalLM, kind: string, build: () => Record<string, Value>, options: ProgramOptions = {}): Promise<Program> {
  let byKind = programs.get(lm);
  if (byKind === undefined) programs.set(lm, (byKind = new Map()));
  let program = byKind.get(kind);
  if (program === undefined) {
    program = Program.compile(build(), { ...options, threads: inferenceThreads(lm) });
    byKind.set(kind, program);
    program.catch(() => byKind.delete(kind));
  }
  return program;
}

/**
 * A model this small runs its inference programs on one thread: its ops are too small to gain from a second core,
 * and handing each to ORT's pool costs more than it saves (the tiny example model, 32 rows running and a few joining
 * each step: 0.88 ms per step on one thread, 1.25 ms on two), while a server needs that core for its own work.
 */
const ONE_THREAD_BELOW_WEIGHTS = 10_000_000;

function inferenceThreads(lm: CausalLM): number | undefined {
  const weights = Object.values(lm.weights.feeds()).reduce((n, t) => n + t.data.length, 0);
  return weights < ONE_THREAD_BELOW_WEIGHTS ? 1 : undefined;
}

/** Per layer, graph inputs for a past of run-time length (or of `length`): [batch, kvHeads, past, headDim]. */
export function pastInputs(lm: CausalLM, length: number | "past" = "past"): KV[] {
  const { numLayers, numKvHeads, headDim } = lm.config;
  const shape = ["batch", numKvHeads, length, headDim];
  return Array.from({ length: numLayers }, (_, i) => ({
    key: o.input(pastName(i, "key"), "float32", shape),
    value: o.input(pastName(i, "value"), "float32", shape),
  }));
}

/** hidden [B, T, d] → logits [B, V] of the last column (left padding puts every row's last token there). */
export function lastLogits(lm: CausalLM, hidden: Value): Value {
  return lm.lmHead(o.gather(hidden, o.constant(BigInt64Array.of(-1n), [], "int64"), 1), "few");
}

function withPresents(logits: Value, presents: KV[]): Record<string, Value> {
  const out: Record<string, Value> = { logits };
  presents.forEach((kv, i) => {
    out[presentName(i, "key")] = kv.key;
    out[presentName(i, "value")] = kv.value;
  });
  return out;
}

/** Token ids [B, seq] at positions [B, seq], after an optional past; `allowed` spans past + seq keys. */
function stepGraph(lm: CausalLM, withPast: boolean, hooks?: ForwardHooks): Record<string, Value> {
  const ids = o.input("input_ids", "int64", ["batch", "seq"]);
  const positions = o.input("position_ids", "int64", ["batch", "seq"]);
  const past = withPast ? pastInputs(lm) : undefined;
  const allowed = o.input("allowed", "bool", ["batch", 1, "seq", withPast ? "past+seq" : "seq"]);
  const { hidden, presents } = lm.forward({ inputsEmbeds: lm.embed(ids), positions, allowed, past, hooks });
  return withPresents(lastLogits(lm, hidden), presents);
}

/** One token per row [B, 1] after a held cache of `capacity` columns; `allowed` spans capacity + 1 keys (the profile bench compiles it too). */
export function decodeGraph(lm: CausalLM, capacity: number, hooks?: ForwardHooks): Record<string, Value> {
  return heldGraph(lm, capacity, 1, hooks);
}

/** Token ids [B, seq] after a held cache of `capacity` columns; `allowed` [B, 1, seq, capacity + seq]; presents are the new columns. */
function heldGraph(lm: CausalLM, capacity: number, seq: 1 | "seq", hooks?: ForwardHooks): Record<string, Value> {
  const ids = o.input("input_ids", "int64", ["batch", seq]);
  const positions = o.input("position_ids", "int64", ["batch", seq]);
  const past = pastInputs(lm, capacity).map((kv) => ({ ...kv, held: true as const }));
  const allowed = o.input("allowed", "bool", ["batch", 1, seq, seq === 1 ? capacity + 1 : `${capacity}+seq`]); // the name concat gives the scores
  const { hidden, presents } = lm.forward({ inputsEmbeds: lm.embed(ids), positions, allowed, past, hooks });
  return withPresents(lastLogits(lm, hidden), presents);
}

/** Virtual-token embeddings [1, n, d] alone. */
function promptGraph(lm: CausalLM): Record<string, Value> {
  const embeds = o.input("prompt_embeds", "float32", ["batch", "n", lm.config.hiddenSize]);
  const positions = o.input("position_ids", "int64", ["batch", "n"]);
  const allowed = o.input("allowed", "bool", ["batch", 1, "n", "n"]);
  const { hidden, presents } = lm.forward({ inputsEmbeds: embeds, positions, allowed });
  return withPresents(lastLogits(lm, hidden), presents);
}
