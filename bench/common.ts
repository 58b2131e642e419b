// Shared pieces of the benchmarks: real model shapes with random weights, timing, FLOP counts, peak memory.
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import * as o from "../src/graph/ops.js";
import type { Value } from "../src/graph/ir.js";
import { type ModelConfig, parseModelConfig } from "../src/models/config.js";
import { tensorSpec } from "../src/models/checkpoint.js";
import { Program } from "../src/runtime/session.js";
import { Rng } from "../src/util/rng.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CausalLM } from "../src/models/causal-lm.js";
import { tokenizerFromParts } from "../src/tokenizer/index.js";
import { parseTrainConfig } from "../src/train/config.js";
import { trainAdapter } from "../src/train/trainer.js";

export const SHAPES: Record<string, Record<string, unknown>> = {
  "gpt2-small": { model_type: "gpt2", n_embd: 768, n_layer: 12, n_head: 12, n_positions: 1024, vocab_size: 50257 },
  "smollm2-135m": {
    model_type: "llama",
    hidden_size: 576,
    num_hidden_layers: 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    intermediate_size: 1536,
    vocab_size: 49152,
    max_position_embeddings: 8192,
    rope_theta: 100000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: true,
  },
  // Qwen/Qwen3-0.6B's config.json (4.x), bfloat16 on the hub.
  "qwen3-0.6b": {
    model_type: "qwen3",
    hidden_size: 1024,
    num_hidden_layers: 28,
    num_attention_heads: 16,
    num_key_value_heads: 8,
    head_dim: 128,
    intermediate_size: 3072,
    vocab_size: 151936,
    max_position_embeddings: 40960,
    rope_theta: 1000000,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
  },
  // google/gemma-3-270m's config.json (4.x), bfloat16 on the hub.
  "gemma3-270m": {
    model_type: "gemma3_text",
    hidden_size: 640,
    num_hidden_layers: 18,
    num_attention_heads: 4,
    num_key_value_heads: 1,
    head_dim: 256,
    intermediate_size: 2048,
    vocab_size: 262144,
    max_position_embeddings: 32768,
    query_pre_attn_scalar: 256,
    sliding_window: 512,
    rope_theta: 1000000,
    rope_local_base_freq: 10000,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
  },
};

export function shapeConfig(name: string): ModelConfig {
  return parseModelConfig(SHAPES[name], `${name} (benchmark shape)`);
}

/** Random weights of the config's real shapes: N(0, 0.02²)-like uniform noise, norms at 1. */
export function randomWeights(config: ModelConfig, seed = 0): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const out = new Map<string, Float32Array>();
  for (const { name, shape } of tensorSpec(config)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const isNormWeight = /(ln_\d|ln_f|layernorm|norm)\.weight$/.test(name);
    if (isNormWeight) data.fill(1);
    else for (let i = 0; i < data.length; i++) data[i] = (rng.next() - 0.5) * 0.07; // std ≈ 0.02
    out.set(name, data);
  }
  return out;
}

/** Seconds per call: `warmup` untimed calls, then the median of `repeats` timed ones. */
export async function timeIt(fn: () => Promise<unknown>, { warmup = 1, repeats = 3 } = {}): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await fn();
    times.push((performance.now() - t0) / 1000);
  }
  return median(times);
}

/** The middle value (the upper one of an even count). */
export function median(values: readonly number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}

/**
 * The machine's matmul peak as ORT reaches it: best GFLOP/s of MatMul [1024, 768] × [768, 3072], weight as
 * initializer. Eight products per run, each summed in the graph, so that copying a 12 MB result out to
 * JavaScript after every product (which took a quarter of the time) is not counted against the peak.
 */
export async function measureMatmulPeak(): Promise<number> {
  const [m, k, n] = [1024, 768, 3072];
  const products = 8;
  const rng = new Rng(1);
  const w = o.constant(Float32Array.from({ length: k * n }, () => rng.next() - 0.5), [k, n]);
  const x = o.input("a", "float32", [m, k]);
  // Each product gets its own (scaled) input, so none can be folded into another.
  const sums = Array.from({ length: products }, (_, i) => o.reduceSum(o.matmul(o.mul(x, 1 + i / 1024), w), [0, 1]));
  const program = await Program.compile({ y: (sums as Value[]).reduce((s, t) => o.add(s, t)) });
  const feeds = { a: { data: Float32Array.from({ length: m * k }, () => rng.next() - 0.5), dims: [m, k] } };
  let best = 0;
  for (let round = 0; round < 5; round++) {
    const seconds = await timeIt(() => program.run(feeds), { warmup: 1, repeats: 3 });
    best = Math.max(best, (products * 2 * m * k * n) / seconds / 1e9);
  }
  return best;
}

/**
 * FLOPs of one forward over B rows of T tokens (counting multiply-adds as 2), with the LM head
 * applied to `headRows` positions: the projections, attention scores and mixing, and the head.
 */
export function forwardFlops(c: ModelConfig, batch: number, seq: number, headRows: number): number {
  const tokens = batch * seq;
  // Every projection of a block is one of its matrices, read from the family's tensor spec (layer 0's).
  const layer0 = tensorSpec(c).filter((t) => /(^|\.)0\./.test(t.name) && t.shape.length === 2);
  const projections = 2 * tokens * layer0.reduce((sum, t) => sum + t.shape[0] * t.shape[1], 0);
  const attn = 2 * 2 * batch * c.numHeads * seq * seq * c.headDim; // q·kᵀ and p·v
  return c.numLayers * (projections + attn) + 2 * headRows * c.hiddenSize * c.vocabSize;
}

/**
 * FLOPs of the backward pass to the input embeddings only (no weight gradients): each product
 * needs one more product of the same size for its input's gradient, attention two.
 */
export function inputBackwardFlops(c: ModelConfig, batch: number, seq: number, headRows: number): number {
  const attn = 2 * 2 * batch * c.numHeads * seq * seq * c.headDim;
  return forwardFlops(c, batch, seq, headRows) + c.numLayers * attn;
}

/**
 * This process's peak resident memory in MiB. Linux's VmHWM belongs to the process's own address space;
 * getrusage's maxRSS would also count the parent's peak, which a child inherits across fork and exec.
 */
export function peakRssMb(): number {
  try {
    const line = readFileSync("/proc/self/status", "utf8").match(/^VmHWM:\s+(\d+) kB/m);
    if (line) return Number(line[1]) / 1024;
  } catch {
    // not Linux: fall through
  }
  return process.resourceUsage().maxRSS / 1024;
}

/** Training on ids needs no real tokenizer: one word, the end of text, also the padding. */
export function idsTokenizer() {
  return tokenizerFromParts({
    tokenizerJson: { version: "1.0", model: { type: "WordLevel", vocab: { "<eos>": 0 }, unk_token: "<eos>" }, added_tokens: [{ id: 0, content: "<eos>", special: true }] },
    tokenizerConfig: { eos_token: "<eos>" },
  });
}

/** `rows` examples of `length` random ids, each labelled on every token (as bench_peft.py's labels = input_ids). */
export function randomExamples(vocabSize: number, rows: number, length: number, seed = 11) {
  const rng = new Rng(seed);
  return Array.from({ length: rows }, () => {
    const ids = Array.from({ length }, () => rng.int(vocabSize));
    return { inputIds: ids, labels: ids };
  });
}

/**
 * Runs `steps` optimiser steps of the real trainer (trainAdapter) on `items`, one batch per step, and returns
 * each step's wall time in seconds: from the end of the previous step (or the start) to the end of this one,
 * so the first one includes compiling the step's graph. `afterStep` runs after each step, outside the timing
 * (a benchmark may wait there for another process's step). `options` are parseTrainConfig's (method, the
 * method's options, lr, …).
 */
export async function trainStepSeconds(
  lm: CausalLM,
  items: { inputIds: number[]; labels: number[] }[],
  options: Record<string, unknown>,
  steps: number,
  afterStep?: (step: { step: number; seconds: number; loss: number }) => void,
): Promise<number[]> {
  const outputDir = mkdtempSync(join(tmpdir(), "bench-train-"));
  const stepSeconds: number[] = [];
  let last = performance.now();
  try {
    await trainAdapter({
      lm,
      tokenizer: idsTokenizer(),
      baseModelName: "benchmark",
      train: items,
      valid: [],
      config: parseTrainConfig({ batchSize: items.length, saveEvery: 1000, ...options, steps }),
      outputDir,
      onStep: (event) => {
        const seconds = (performance.now() - last) / 1000;
        stepSeconds.push(seconds);
        afterStep?.({ step: event.step, seconds, loss: event.loss });
        last = performance.now();
      },
    });
  } finally {
    rmSync(outputDir, { recursive: true, force: true });
  }
  return stepSeconds;
}

/**
 * A child process that answers in JSON lines (a peer's script driven call by call, so that its calls interleave
 * with ours): `send` writes a line to it, `next` is its next JSON line (lines not starting with "{" are a library's
 * chatter), `finish` closes its input and returns its last line.
 */
export class JsonLinesChild {
  private readonly lines: string[] = [];
  private readonly waiting: { resolve: (line: string) => void; reject: (err: Error) => void }[] = [];
  private ended = false;

  constructor(
    readonly label: string,
    private readonly child: ChildProcess,
  ) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (!line.startsWith("{")) return;
      const w = this.waiting.shift();
      if (w) w.resolve(line);
      else this.lines.push(line);
    });
    child.on("exit", (code) => {
      this.ended = true;
      for (const w of this.waiting.splice(0)) w.reject(new Error(`${label} exited (code ${code}) before answering`));
    });
  }

  async next<T = Record<string, unknown>>(): Promise<T> {
    const line = this.lines.shift();
    if (line !== undefined) return JSON.parse(line) as T;
    if (this.ended) throw new Error(`${this.label} has exited`);
    return JSON.parse(await new Promise<string>((resolve, reject) => this.waiting.push({ resolve, reject }))) as T;
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  finish<T = Record<string, unknown>>(): Promise<T> {
    this.child.stdin!.end();
    return this.next<T>();
  }
}
