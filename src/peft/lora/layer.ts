/**
 * The LoRA layer (Hu et al. 2021; PEFT's tuners/lora/layer.py): a frozen projection y = W·x (+ b) plus
 * a low-rank update, y' = y + s·B·(A·x) with A [r, in], B [out, r] and s = alpha/r (alpha/√r with
 * rsLoRA, Kalajdzievski 2023). A and B are [r, in] / [out, r] whatever the base weight's layout (GPT-2's
 * Conv1D stores W as [in, out]; PEFT's fan_in_fan_out then only matters when merging, and we hold W transposed).
 */
import type { Value } from "../../graph/ir.js";
import * as o from "../../graph/ops.js";
import * as nn from "../../graph/nn.js";
import type { ForwardHooks } from "../../models/causal-lm.js";
import { Rng } from "../../util/rng.js";
import { fail } from "../../util/errors.js";
import type { Tensor } from "../../runtime/session.js";
import type { Batch } from "../../data/index.js";
import type { TrainingStep } from "../method.js";
import { linearInit } from "../prefix-tuning/model.js";

/** The update's scale: lora_alpha / r, or lora_alpha / √r with rsLoRA. */
export function loraScale(config: { r: number; lora_alpha: number; use_rslora?: boolean }): number {
  return config.use_rslora ? config.lora_alpha / Math.sqrt(config.r) : config.lora_alpha / config.r;
}

/** The forward's `linear` hook: each adapted module (by canonical name) gets y + scale·(x·Aᵀ)·Bᵀ; the rest pass through. */
export function loraHooks(factors: ReadonlyMap<string, { a: Value; b: Value }>, scale: number, dropout?: LoraDropout): ForwardHooks {
  return {
    linear(module, x, y) {
      const f = factors.get(module);
      if (f === undefined) return y;
      const down = nn.linear(dropout === undefined ? x : dropout.apply(module, x), f.a, undefined, "out_in"); // [..., r]
      return o.add(y, o.mul(nn.linear(down, f.b, undefined, "out_in"), scale)); // [..., out]
    },
  };
}

/**
 * PEFT's init (init_lora_weights=True): A as nn.Linear's default, kaiming_uniform(a=√5) = U(−1/√in, 1/√in),
 * and B zeros, so the adapted model starts as the base model.
 */
export function initFactors(rng: Rng, r: number, inFeatures: number, outFeatures: number): { a: Float32Array; b: Float32Array } {
  return { a: linearInit(rng, r * inFeatures, inFeatures), b: new Float32Array(outFeatures * r) };
}

/**
 * PEFT's lora_dropout while training: inverted dropout on each adapted module's input, x ⊙ m with m ∈ {0, 1/(1−p)}
 * drawn per step (a pure function of seed, step, micro-batch and module, so a resumed run draws the same masks).
 * The masks are graph inputs fed each step; without a training step (validation) they are all ones.
 */
export class LoraDropout {
  private readonly masks = new Map<string, Value>();

  constructor(private readonly p: number) {}

  apply(module: string, x: Value): Value {
    let mask = this.masks.get(module);
    if (mask === undefined) {
      mask = o.input(`lora_dropout.${module}`, "float32", x.shape);
      this.masks.set(module, mask);
    }
    return o.mul(x, mask);
  }

  feeds(batch: Batch<ArrayLike<number>>, step?: TrainingStep): Record<string, Tensor> {
    const feeds: Record<string, Tensor> = {};
    let k = 0;
    for (const [module, mask] of this.masks) {
      const dims = mask.shape.map((d) => (d === "batch" ? batch.batchSize : d === "seq" ? batch.seqLen : d));
      if (dims.some((d) => typeof d !== "number")) fail("usage", `LoRA dropout cannot size its mask for ${module}: ${JSON.stringify(mask.shape)}`);
      const size = (dims as number[]).reduce((a, b) => a * b, 1);
      const data = new Float32Array(size);
      if (step === undefined) data.fill(1);
      else {
        const rng = new Rng(((step.seed * 1_000_003 + step.step) * 64 + step.micro) * 4096 + k);
        const keep = 1 / (1 - this.p);
        for (let i = 0; i < size; i++) data[i] = rng.next() < this.p ? 0 : keep;
      }
      feeds[`lora_dropout.${module}`] = { data, dims: dims as number[] };
      k++;
    }
    return feeds;
  }
}
