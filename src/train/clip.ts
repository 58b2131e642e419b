import { fail } from "../util/errors.js";

/**
 * Scale all gradients in place so their joint L2 norm is at most `maxNorm`, as
 * torch.nn.utils.clip_grad_norm_ (norm_type 2): coef = maxNorm / (norm + 1e-6), applied when it is below 1.
 * Returns the total norm before clipping.
 *
 * Unlike torch (error_if_nonfinite=False), a non-finite norm leaves the gradients untouched instead of
 * filling them all with NaN, so `assertFinite` can still name the tensor that went bad.
 */
export function clipGradNorm(grads: Map<string, Float32Array>, maxNorm: number): number {
  if (!(maxNorm > 0 && Number.isFinite(maxNorm))) {
    fail("usage", `maxNorm must be a finite number > 0, got ${maxNorm}`, { field: "maxNorm" });
  }
  const norm = globalNorm(grads);
  const coef = maxNorm / (norm + 1e-6);
  if (Number.isFinite(norm) && coef < 1) {
    for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] *= coef;
  }
  return norm;
}

/** The joint L2 norm of all gradients (a loop: spreading millions of values into Math.hypot overflows the stack). */
export function globalNorm(grads: Map<string, Float32Array>): number {
  // Float64 accumulation: float32 squares cannot overflow it, and the sum stays accurate.
  let sumSquares = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) sumSquares += g[i] * g[i];
  return Math.sqrt(sumSquares);
}

/**
 * Throw SoftpromptError "nonfinite" if the loss, or any gradient, holds a NaN or an infinity,
 * naming the step, the tensor and the first bad index.
 */
export function assertFinite(value: number | Map<string, Float32Array>, step: number): void {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) fail("nonfinite", `loss is ${value} at step ${step}`, { tensor: "loss" });
    return;
  }
  for (const [name, g] of value) {
    for (let i = 0; i < g.length; i++) {
      if (!Number.isFinite(g[i])) {
        fail("nonfinite", `gradient is ${g[i]} at index ${i} at step ${step}`, { tensor: name });
      }
    }
  }
}
