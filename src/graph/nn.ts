/**
 * Neural-network building blocks composed from primitive ops, so their gradients come for free:
 * activations (the table; tanh GELU and SiLU are ops of their own), projections, rotary embeddings,
 * masked attention and cross-entropy.
 */
import { type DType, type Value, shapeError, formatShape, staticSize } from "./ir.js";
import * as o from "./ops.js";

/** The most negative float32: masked attention scores, as HF's eager attention uses (finite, so no NaN). */
export const MASKED_SCORE = -3.4028234663852886e38;

/** GELU, exact: x·Φ(x) = ½x(1 + erf(x/√2)). */
export function gelu(x: Value): Value {
  return o.mul(o.mul(x, 0.5), o.add(o.erf(o.mul(x, Math.SQRT1_2)), 1));
}

export function relu(x: Value): Value {
  // where, not max: the gradient at 0 goes entirely to one side.
  return o.where(o.greater(x, 0), x, 0);
}

/**
 * The one activation table, by the names HF configs use (`hidden_act`, `activation_function`).
 * gelu_new and gelu_pytorch_tanh are the same tanh approximation under two names; gelu is the exact erf form.
 */
export const ACTIVATIONS = {
  gelu_new: o.geluTanh,
  gelu,
  gelu_pytorch_tanh: o.geluTanh,
  relu,
  silu: o.silu,
} as const satisfies Record<string, (x: Value) => Value>;
export type Activation = keyof typeof ACTIVATIONS;
/** The table's names in order, for config schemas and their error messages. */
export const ACTIVATION_NAMES = Object.keys(ACTIVATIONS) as [Activation, ...Activation[]];

/**
 * Weights this large (4 MB of float32) take the decode product as W·xᵀ. Below it, repacking costs less than the
 * reshapes and transpose around the product: from 2 MB, SmolLM2-135M's 576×1536 MLP weights made its batch-1
 * step 8% slower and batch 8 no faster; the tiny example model's would add nodes to a graph of 1-µs ops.
 */
const WEIGHT_AS_LEFT_OPERAND_FROM = 1 << 20;

/**
 * A projection x [..., in] → [..., out] using the weight as held: `layout` "in_out" for [in, out],
 * "out_in" for nn.Linear's [out, in] (transposed inside the product, never copied).
 * Activations of rank > 2 go to MatMul as they are (ORT runs one GEMM over the leading dims): no
 * flatten/unflatten reshapes and the shape arithmetic they need; 2-D ones to Gemm.
 * One position per row (a decode step: as many product rows as batch rows) with a large [out, in]
 * weight takes the product the other way round, yᵀ = W·xᵀ: ORT repacks a weight fed as an input on
 * every call when it is the right operand, and reads it in place when it is the left one (768×3072 at
 * 8 rows: 0.27–0.32 ms vs 0.44 ms; a GPT-2-small decode step at batch 8 −26 to −35%, batch 1 unchanged).
 */
export function linear(x: Value, weight: Value, bias: Value | undefined, layout: "in_out" | "out_in"): Value {
  const inDim = x.shape[x.shape.length - 1];
  if (typeof inDim !== "number") shapeError("linear", `input's last dim must be static, got ${formatShape(x.shape)}`);
  const transB = layout === "out_in";
  let y: Value;
  if (transB && x.shape.length === 3 && x.shape[1] === 1 && (staticSize(weight.shape) ?? 0) >= WEIGHT_AS_LEFT_OPERAND_FROM) {
    const out = weight.shape[0] as number;
    const yT = o.matmul(weight, o.reshape(x, [-1, inDim]), { transB: true }); // [out, rows]
    y = o.reshape(o.transpose(yT, [1, 0]), [-1, 1, out]);
  } else {
    y = x.shape.length === 2 ? o.gemm(x, weight, { transB }) : o.matmul(x, weight, { transB });
  }
  // The bias as an Add of its own: ORT's Gemm with a C input measured slower (it accumulates onto C).
  return bias === undefined ? y : o.add(y, bias);
}

/** How many rows an LM head's hidden states have: "few" for one per batch row (a step's last position). */
export type HeadRows = "many" | "few";

/**
 * Logits h·Wᵀ of hidden states h [N, d] for an output embedding W [vocab, d]. With few rows, as (W·hᵀ)ᵀ: the
 * vocabulary-sized weight is read in place instead of repacked, as linear does for a decode step's projections.
 */
export function outputLogits(h: Value, weight: Value, rows: HeadRows = "many"): Value {
  return rows === "few" ? o.transpose(o.matmul(weight, h, { transB: true }), [1, 0]) : o.gemm(h, weight, { transB: true });
}

/**
 * Rotary position embedding (Su et al. 2021), HF's rotate_half convention: x·cos + rotate_half(x)·sin,
 * with angles pos·invFreq repeated over both halves. x [B, H, T, hd]; cos, sin [B, 1, T, rd]. When the
 * tables are narrower than the head (partial rotary: GPT-NeoX, Phi-3), only the first rd dims turn.
 */
export function rotary(x: Value, cos: Value, sin: Value): Value {
  const hd = x.shape[x.shape.length - 1] as number;
  const rd = cos.shape[cos.shape.length - 1] as number;
  if (rd < hd) return o.concat([rotary(o.slice(x, -1, 0, rd), cos, sin), o.slice(x, -1, rd, hd)], -1);
  const x1 = o.slice(x, -1, 0, hd / 2);
  const x2 = o.slice(x, -1, hd / 2, hd);
  const rotated = o.concat([o.neg(x2), x1], -1);
  return o.add(o.mul(x, cos), o.mul(rotated, sin));
}

export interface RotaryOptions {
  /** Multiplies cos and sin (LongRoPE's attention factor). */
  scale?: number;
  /** Other frequencies once the forward's largest position + 1 exceeds `beyond` (LongRoPE's long factors). */
  long?: { invFreq: Float32Array; beyond: number };
}

/** cos and sin tables [B, 1, T, hd] for rotary embeddings at the given positions [B, T]. */
export function rotaryTables(positions: Value, invFreq: Float32Array, { scale = 1, long }: RotaryOptions = {}): { cos: Value; sin: Value } {
  const pos = o.unsqueeze(o.cast(positions, "float32"), [-1]); // [B, T, 1]
  let inv: Value = o.constant(invFreq, [invFreq.length]);
  if (long !== undefined) {
    // As transformers' longrope_frequency_update: one choice for the whole batch, from its largest position.
    const length = o.add(o.reduceMax(pos, [0, 1, 2]), 1);
    inv = o.where(o.greater(length, long.beyond), o.constant(long.invFreq, [invFreq.length]), inv);
  }
  const freqs = o.mul(pos, inv); // [B, T, hd/2]
  const angles = o.unsqueeze(o.concat([freqs, freqs], -1), [1]); // [B, 1, T, hd]
  if (scale === 1) return { cos: o.cos(angles), sin: o.sin(angles) };
  return { cos: o.mul(o.cos(angles), scale), sin: o.mul(o.sin(angles), scale) };
}

/**
 * Which keys each query may see, built once per graph from a boolean pattern allowed [B, 1, Tq, Tk]
 * (causal and padding) and shared by every layer: added to the scores as 0 where allowed and
 * MASKED_SCORE elsewhere, as HF's eager attention does. The sum rounds to MASKED_SCORE exactly, so a
 * fully masked row still gets uniform weights, not NaN; and adding needs no gradient of its own.
 */
export class AttentionMask {
  private readonly biases = new Map<string, Value>();
  private readonly windows = new Map<number, AttentionMask>();

  /**
   * `positions` [B, Tq] are the queries' positions; with `hasPast` false they are the keys' too (the
   * keys are this call's tokens), which sliding windows need.
   */
  constructor(
    readonly allowed: Value,
    private readonly positions?: Value,
    private readonly hasPast = false,
  ) {}

  /**
   * The same pattern within a sliding window (Mistral, Gemma 2/3, Qwen3, SmolLM3): query q sees key k
   * only when q - k < size, as transformers' sliding_window_overlay. Without a past the distance is
   * the positions' difference (with "peft" positions, padding counts, as in PEFT). A cached past has
   * no positions in the graph, so the distance is counted over the visible keys (the k in window are
   * the last `size` visible keys up to q): the same wherever a row's positions run on without a gap,
   * i.e. everywhere but "peft" positions after a prompt whose row is left-padded.
   */
  window(size: number): AttentionMask {
    let masked = this.windows.get(size);
    if (masked === undefined) {
      let inWindow: Value;
      if (!this.hasPast && this.positions !== undefined) {
        const pos = o.cast(this.positions, "float32");
        const distance = o.sub(o.unsqueeze(pos, [1, 3]), o.unsqueeze(pos, [1, 2])); // [B, 1, Tq, Tk]
        inWindow = o.less(distance, size);
      } else {
        const later = o.cumSum(o.cast(this.allowed, "float32"), -1, true); // visible keys from k up to q, [B, 1, Tq, Tk]
        inWindow = o.less(later, size + 0.5);
      }
      masked = new AttentionMask(o.and(this.allowed, inWindow));
      this.windows.set(size, masked);
    }
    return masked;
  }

  /** [B, 1, G·Tq, Tk]: the additive mask repeated for the G query heads that share a kv head. */
  bias(groups: number, dtype: DType): Value {
    const key = `${groups} ${dtype}`;
    let b = this.biases.get(key);
    if (b === undefined) {
      const one = o.where(this.allowed, o.scalar(0, dtype), MASKED_SCORE);
      b = groups === 1 ? one : o.concat(Array<Value>(groups).fill(one), 2);
      this.biases.set(key, b);
    }
    return b;
  }
}

/** Soft-capping (Gemma 2): cap·tanh(x / cap), smooth and bounded by ±cap. */
export function softcap(x: Value, cap: number): Value {
  return o.mul(o.tanh(o.div(x, cap)), cap);
}

/**
 * Scaled dot-product attention. q [B, H, Tq, hd]; k, v [B, Hkv, Tk, hd] where H is a multiple of Hkv
 * (grouped-query attention: query head h reads kv head ⌊h / (H/Hkv)⌋). The G query heads of a kv head
 * are stacked as G·Tq rows of one product, so k and v are neither broadcast nor summed back. `cap`:
 * the scores' soft cap (Gemma 2), if any. `past` (keys/values of a fixed length P, held by the caller
 * as a KV cache): the keys are [past, k] and the mask spans P + Tk, but past and new are never
 * concatenated — their scores are joined, and the weights split into two products.
 */
export function attention(q: Value, k: Value, v: Value, mask: AttentionMask, scale: number, cap?: number, past?: { key: Value; value: Value }): Value {
  const heads = q.shape[1] as number;
  const kvHeads = k.shape[1] as number;
  const hd = q.shape[3] as number;
  if (heads % kvHeads !== 0) shapeError("attention", `query heads ${heads} are not a multiple of kv heads ${kvHeads}`);
  const groups = heads / kvHeads;
  const rows = groups === 1 ? q : o.reshape(q, [0, kvHeads, -1, hd]); // [B, Hkv, G·Tq, hd]
  const pastLength = past?.key.shape[2] ?? 0;
  if (typeof pastLength !== "number") return shapeError("attention", `a held past needs a fixed length, got ${formatShape(past!.key.shape)}`);
  // With a past held apart: the scores of [past, new] keys joined (small), never the keys themselves. One
  // new key (a decode step) is a broadcast product, not a batch of B·Hkv one-column matmuls.
  const oneKey = past !== undefined && k.shape[2] === 1;
  const product = (keys: Value) => o.matmul(rows, keys, { transB: true, alpha: scale });
  const newScores = () => (oneKey ? o.mul(o.reduceSum(o.mul(rows, k), [3], true), scale) : product(k));
  const raw = past === undefined ? product(k) : o.concat([product(past.key), newScores()], -1); // [B, Hkv, G·Tq, Tk]
  const scores = o.add(cap === undefined ? raw : softcap(raw, cap), mask.bias(groups, q.dtype)); // logits capped before the mask, as Gemma 2
  const weights = o.softmax(scores, -1);
  let out: Value; // [B, Hkv, G·Tq, hd]
  if (past === undefined) out = o.matmul(weights, v);
  else {
    const newWeights = o.slice(weights, -1, pastLength, Number.MAX_SAFE_INTEGER);
    out = o.add(o.matmul(o.slice(weights, -1, 0, pastLength), past.value), oneKey ? o.mul(newWeights, v) : o.matmul(newWeights, v));
  }
  return groups === 1 ? out : o.reshape(out, [0, heads, -1, hd]);
}

/**
 * Mean cross-entropy of logits [N, V] against targets [N] (int64), skipping targets equal to
 * `ignoreIndex`; the mean is over counted targets (0 when none are counted). One fused op.
 */
export function crossEntropy(logits: Value, targets: Value, ignoreIndex = -100): Value {
  return o.softmaxCrossEntropy(logits, targets, ignoreIndex);
}
