import { fail } from "../util/errors.js";

/**
 * Optimisers over named Float32Array parameters, updated in place.
 *
 * Arithmetic runs in float64 per element and is stored back as float32, so results match PyTorch's
 * float32 kernels to a few ulps, not bit for bit. Resuming is bit-exact: every moment lives in a
 * Float32Array and `state()` saves their bytes (base64), so a loaded optimiser continues identically.
 *
 * As in PyTorch, a parameter with no gradient this step is skipped and its state left alone.
 */
export interface Optimizer {
  step(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): void;
  state(): OptimizerState;
  /** Replace all state with one saved by `state()` (typically after `JSON.parse`). */
  load(state: unknown): void;
}

export type OptimizerState = AdamWState | AdafactorState;

export interface AdamWState {
  kind: "adamw";
  params: Record<string, { step: number; expAvg: string; expAvgSq: string }>;
}

export interface AdafactorState {
  kind: "adafactor";
  params: Record<string, AdafactorParamState>;
}

/** Base64 float32 bytes; `row`/`col` for factored parameters, `full` otherwise; `expAvg` only with beta1. */
export interface AdafactorParamState {
  step: number;
  row?: string;
  col?: string;
  full?: string;
  expAvg?: string;
}

export interface AdamWOptions {
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/**
 * AdamW as torch.optim.AdamW (Loshchilov & Hutter 2019; amsgrad=False, maximize=False):
 *   p ← p·(1 − lr·wd)                                   decoupled decay, before the update
 *   m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²
 *   p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)
 */
export class AdamW implements Optimizer {
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly eps: number;
  private readonly weightDecay: number;
  private moments = new Map<string, { step: number; expAvg: Float32Array; expAvgSq: Float32Array }>();

  constructor(options: AdamWOptions = {}) {
    [this.beta1, this.beta2] = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    checkUnitInterval(this.beta1, "betas[0]");
    checkUnitInterval(this.beta2, "betas[1]");
    checkNonNegative(this.eps, "eps");
    checkNonNegative(this.weightDecay, "weightDecay");
  }

  step(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): void {
    checkNonNegative(lr, "lr");
    for (const [name, p, g] of pairs(params, grads)) {
      let m = this.moments.get(name);
      if (m === undefined) {
        m = { step: 0, expAvg: new Float32Array(p.length), expAvgSq: new Float32Array(p.length) };
        this.moments.set(name, m);
      }
      momentOf(m.expAvg, p.length, name, "expAvg");
      m.step += 1;
      const decay = 1 - lr * this.weightDecay;
      const stepSize = lr / (1 - this.beta1 ** m.step);
      const biasCorrection2Sqrt = Math.sqrt(1 - this.beta2 ** m.step);
      const { expAvg, expAvgSq } = m;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i];
        expAvg[i] = this.beta1 * expAvg[i] + (1 - this.beta1) * gi;
        expAvgSq[i] = this.beta2 * expAvgSq[i] + (1 - this.beta2) * gi * gi;
        const denom = Math.sqrt(expAvgSq[i]) / biasCorrection2Sqrt + this.eps;
        p[i] = p[i] * decay - (stepSize * expAvg[i]) / denom;
      }
    }
  }

  state(): AdamWState {
    const params: AdamWState["params"] = {};
    for (const [name, m] of this.moments) {
      params[name] = { step: m.step, expAvg: encodeFloat32(m.expAvg), expAvgSq: encodeFloat32(m.expAvgSq) };
    }
    return { kind: "adamw", params };
  }

  load(state: unknown): void {
    const moments = new Map<string, { step: number; expAvg: Float32Array; expAvgSq: Float32Array }>();
    for (const [name, s] of savedParams(state, "adamw")) {
      const expAvg = decodeFloat32(s.expAvg, `${name}.expAvg`);
      const expAvgSq = decodeFloat32(s.expAvgSq, `${name}.expAvgSq`);
      if (expAvg.length !== expAvgSq.length) {
        fail("file", "expAvg and expAvgSq differ in length", { tensor: name, op: "AdamW.load" });
      }
      moments.set(name, { step: savedStep(s.step, name), expAvg, expAvgSq });
    }
    this.moments = moments;
  }
}

export interface AdafactorOptions {
  /** Shape of every parameter: those with two or more dimensions get factored second moments. */
  shapes: Map<string, number[]>;
  /** First-moment decay; undefined (the default) keeps no first moment. */
  beta1?: number;
  decayRate?: number;
  /**
   * The regulariser added to g² (HF's eps[0]). HF's eps[1] only bounds the parameter scale used by
   * scale_parameter / relative_step, which this port leaves off, as Lester et al. 2021 did.
   */
  eps?: number;
  clipThreshold?: number;
  weightDecay?: number;
}

interface AdafactorMoments {
  step: number;
  /** Factored: per (batch, row) and per (batch, col) running means of g² + eps. */
  row?: Float32Array;
  col?: Float32Array;
  full?: Float32Array;
  expAvg?: Float32Array;
}

/**
 * Adafactor (Shazeer & Stern 2018) as HF transformers' `Adafactor` with scale_parameter=False,
 * relative_step=False, warmup_init=False, so the step size is the `lr` given:
 *   β2ₜ = 1 − t^decayRate
 *   factored (shape [..., R, C]):  r ← β2ₜ·r + (1 − β2ₜ)·mean_cols(g² + eps)
 *                                  c ← β2ₜ·c + (1 − β2ₜ)·mean_rows(g² + eps)
 *                                  u = g / √(r ⊗ c / mean(r))
 *   otherwise:                     v ← β2ₜ·v + (1 − β2ₜ)·(g² + eps),  u = g / √v
 *   u ← lr · u / max(1, RMS(u) / clipThreshold)
 *   with beta1: m ← β1·m + (1 − β1)·u,  u = m
 *   p ← p − lr·wd·p − u
 */
export class Adafactor implements Optimizer {
  private readonly shapes: Map<string, number[]>;
  private readonly beta1: number | undefined;
  private readonly decayRate: number;
  private readonly eps: number;
  private readonly clipThreshold: number;
  private readonly weightDecay: number;
  private moments = new Map<string, AdafactorMoments>();

  constructor(options: AdafactorOptions) {
    this.shapes = options.shapes;
    this.beta1 = options.beta1;
    this.decayRate = options.decayRate ?? -0.8;
    this.eps = options.eps ?? 1e-30;
    this.clipThreshold = options.clipThreshold ?? 1.0;
    this.weightDecay = options.weightDecay ?? 0;
    if (this.beta1 !== undefined) checkUnitInterval(this.beta1, "beta1");
    // t^decayRate must fall from 1 towards 0 so that β2ₜ rises from 0 towards 1.
    if (!(this.decayRate < 0)) {
      fail("usage", `decayRate must be negative, got ${this.decayRate}`, { field: "decayRate" });
    }
    checkNonNegative(this.eps, "eps");
    if (!(this.clipThreshold > 0)) {
      fail("usage", `clipThreshold must be positive, got ${this.clipThreshold}`, { field: "clipThreshold" });
    }
    checkNonNegative(this.weightDecay, "weightDecay");
  }

  step(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): void {
    checkNonNegative(lr, "lr");
    for (const [name, p, g] of pairs(params, grads)) {
      const [batches, rows, cols] = this.factoring(name, p.length);
      let m = this.moments.get(name);
      if (m === undefined) {
        m =
          rows === 0
            ? { step: 0, full: new Float32Array(p.length) }
            : { step: 0, row: new Float32Array(batches * rows), col: new Float32Array(batches * cols) };
        if (this.beta1 !== undefined) m.expAvg = new Float32Array(p.length);
        this.moments.set(name, m);
      }
      m.step += 1;
      const beta2t = 1 - m.step ** this.decayRate;
      const update = new Float64Array(p.length);
      if (rows === 0) {
        const full = momentOf(m.full, p.length, name, "full");
        for (let i = 0; i < p.length; i++) {
          full[i] = beta2t * full[i] + (1 - beta2t) * (g[i] * g[i] + this.eps);
          update[i] = g[i] / Math.sqrt(full[i]);
        }
      } else {
        this.factoredUpdate(m, g, update, batches, rows, cols, beta2t, name);
      }

      let sumSquares = 0;
      for (let i = 0; i < update.length; i++) sumSquares += update[i] * update[i];
      const rms = Math.sqrt(sumSquares / update.length);
      const scale = lr / Math.max(1, rms / this.clipThreshold);

      const decay = 1 - lr * this.weightDecay;
      if (this.beta1 === undefined) {
        for (let i = 0; i < p.length; i++) p[i] = p[i] * decay - scale * update[i];
      } else {
        const expAvg = momentOf(m.expAvg, p.length, name, "expAvg");
        for (let i = 0; i < p.length; i++) {
          expAvg[i] = this.beta1 * expAvg[i] + (1 - this.beta1) * scale * update[i];
          p[i] = p[i] * decay - expAvg[i];
        }
      }
    }
  }

  /** Treat shape [...batch, R, C] as [batches, R, C]; rows = 0 means not factored (fewer than two dims). */
  private factoring(name: string, length: number): [number, number, number] {
    const shape = this.shapes.get(name);
    if (shape === undefined) fail("usage", "Adafactor was given no shape for this parameter", { tensor: name });
    const size = shape.reduce((a, b) => a * b, 1);
    if (size !== length) {
      fail("shape", `shape [${shape.join(", ")}] has ${size} elements but the parameter has ${length}`, {
        tensor: name,
      });
    }
    if (shape.length < 2 || length === 0) return [1, 0, 0];
    const rows = shape[shape.length - 2];
    const cols = shape[shape.length - 1];
    return [length / (rows * cols), rows, cols];
  }

  private factoredUpdate(
    m: AdafactorMoments,
    g: Float32Array,
    update: Float64Array,
    batches: number,
    rows: number,
    cols: number,
    beta2t: number,
    name: string,
  ): void {
    const row = momentOf(m.row, batches * rows, name, "row");
    const col = momentOf(m.col, batches * cols, name, "col");
    for (let b = 0; b < batches; b++) {
      const base = b * rows * cols;
      const colMeans = new Float64Array(cols);
      for (let r = 0; r < rows; r++) {
        let rowSum = 0;
        for (let c = 0; c < cols; c++) {
          const sq = g[base + r * cols + c] ** 2 + this.eps;
          rowSum += sq;
          colMeans[c] += sq / rows;
        }
        row[b * rows + r] = beta2t * row[b * rows + r] + (1 - beta2t) * (rowSum / cols);
      }
      for (let c = 0; c < cols; c++) col[b * cols + c] = beta2t * col[b * cols + c] + (1 - beta2t) * colMeans[c];

      // HF's _approx_sq_grad (from fairseq): rsqrt(r / mean(r)) ⊗ rsqrt(c).
      let rowMean = 0;
      for (let r = 0; r < rows; r++) rowMean += row[b * rows + r] / rows;
      for (let r = 0; r < rows; r++) {
        const rowFactor = 1 / Math.sqrt(row[b * rows + r] / rowMean);
        for (let c = 0; c < cols; c++) {
          const i = base + r * cols + c;
          update[i] = (rowFactor / Math.sqrt(col[b * cols + c])) * g[i];
        }
      }
    }
  }

  state(): AdafactorState {
    const params: AdafactorState["params"] = {};
    for (const [name, m] of this.moments) {
      const saved: AdafactorParamState = { step: m.step };
      if (m.row !== undefined) saved.row = encodeFloat32(m.row);
      if (m.col !== undefined) saved.col = encodeFloat32(m.col);
      if (m.full !== undefined) saved.full = encodeFloat32(m.full);
      if (m.expAvg !== undefined) saved.expAvg = encodeFloat32(m.expAvg);
      params[name] = saved;
    }
    return { kind: "adafactor", params };
  }

  load(state: unknown): void {
    const moments = new Map<string, AdafactorMoments>();
    for (const [name, s] of savedParams(state, "adafactor")) {
      const m: AdafactorMoments = { step: savedStep(s.step, name) };
      for (const key of ["row", "col", "full", "expAvg"] as const) {
        if (s[key] !== undefined) m[key] = decodeFloat32(s[key], `${name}.${key}`);
      }
      moments.set(name, m);
    }
    this.moments = moments;
  }
}

/** The (name, param, grad) triples to update: params with a gradient, in the params' order. */
function* pairs(
  params: Map<string, Float32Array>,
  grads: Map<string, Float32Array>,
): Generator<[string, Float32Array, Float32Array]> {
  for (const name of grads.keys()) {
    if (!params.has(name)) {
      fail("usage", "there is a gradient for a parameter the optimiser was not given", { tensor: name });
    }
  }
  for (const [name, p] of params) {
    const g = grads.get(name);
    if (g === undefined) continue;
    if (g.length !== p.length) {
      fail("shape", `gradient has ${g.length} elements but the parameter has ${p.length}`, { tensor: name });
    }
    yield [name, p, g];
  }
}

/** A moment buffer from state, checked against the size this parameter needs (a loaded state may not fit). */
function momentOf(buffer: Float32Array | undefined, length: number, name: string, key: string): Float32Array {
  if (buffer === undefined || buffer.length !== length) {
    const hint = "saved for another shape or optimiser setting?";
    fail("shape", `optimiser state "${key}" does not fit this parameter (${hint})`, { tensor: name });
  }
  return buffer;
}

/** The per-parameter entries of a saved state, after checking it is one of ours and of this kind. */
function savedParams(state: unknown, kind: OptimizerState["kind"]): [string, Record<string, unknown>][] {
  const s = state as { kind?: unknown; params?: unknown } | null;
  if (typeof s !== "object" || s === null || typeof s.params !== "object" || s.params === null) {
    fail("file", "optimiser state must be an object with `kind` and `params`", { field: "optimizer" });
  }
  if (s.kind !== kind) {
    fail("config", `optimiser state is for "${String(s.kind)}" but the optimiser is "${kind}"`, {
      field: "optimizer.kind",
    });
  }
  const entries = Object.entries(s.params as Record<string, unknown>);
  for (const [name, entry] of entries) {
    if (typeof entry !== "object" || entry === null) {
      fail("file", "optimiser state entry must be an object", { tensor: name });
    }
  }
  return entries as [string, Record<string, unknown>][];
}

function savedStep(step: unknown, name: string): number {
  if (!Number.isSafeInteger(step) || (step as number) < 0) {
    fail("file", `optimiser step must be a non-negative integer, got ${String(step)}`, { tensor: name, field: "step" });
  }
  return step as number;
}

/** Exact serialisation: the float32 bytes, little-endian whatever the host, in base64. */
function encodeFloat32(values: Float32Array): string {
  const bytes = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => bytes.writeFloatLE(v, i * 4));
  return bytes.toString("base64");
}

function decodeFloat32(text: unknown, field: string): Float32Array {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    fail("file", "optimiser state tensor must be a base64 string", { field });
  }
  const bytes = Buffer.from(text, "base64");
  if (bytes.length % 4 !== 0) {
    fail("file", `optimiser state tensor has ${bytes.length} bytes, not a multiple of 4`, { field });
  }
  return Float32Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
}

function checkUnitInterval(value: number, field: string): void {
  if (!(value >= 0 && value < 1)) fail("usage", `${field} must be in [0, 1), got ${value}`, { field });
}

function checkNonNegative(value: number, field: string): void {
  if (!(value >= 0 && Number.isFinite(value))) {
    fail("usage", `${field} must be a finite number >= 0, got ${value}`, { field });
  }
}
