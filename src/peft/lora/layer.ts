/**
 * The LoRA layer (Hu et al. 2021; PEFT's tuners/lora/layer.py): a frozen projection y = W·x (+ b) plus
 * a low-rank update, y' = y + s·B·(A·x) with A [r, in], B [out, r] and s = alpha/r (alpha/√r with
 * rsLoRA, Kalajdzievski 2023). A and B are [r, in] / [out, r] whatever the base weight's layout (GPT-2's
 * Conv1D stores W as [in, out]; PEFT's fan_in_fan_out then only matters when merging).
 */
import type { Value } from "../../graph/ir.js";
import * as o from "../../graph/ops.js";
import * as nn from "../../graph/nn.js";
import type { ForwardHooks } from "../../models/causal-lm.js";
import type { Rng } from "../../util/rng.js";
import { linearInit } from "../prefix-tuning/model.js";

/** The update's scale: lora_alpha / r, or lora_alpha / √r with rsLoRA. */
export function loraScale(config: { r: number; lora_alpha: number; use_rslora?: boolean }): number {
  return config.use_rslora ? config.lora_alpha / Math.sqrt(config.r) : config.lora_alpha / config.r;
}

/** The forward's `linear` hook: each adapted module (by canonical name) gets y + scale·(x·Aᵀ)·Bᵀ; the rest pass through. */
export function loraHooks(factors: ReadonlyMap<string, { a: Value; b: Value }>, scale: number): ForwardHooks {
  return {
    linear(module, x, y) {
      const f = factors.get(module);
      if (f === undefined) return y;
      const down = nn.linear(x, f.a, undefined, "out_in"); // [..., r]
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
