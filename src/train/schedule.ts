import { fail } from "../util/errors.js";

export const DECAYS = ["constant", "linear", "cosine"] as const;
export type Decay = (typeof DECAYS)[number];

export interface ScheduleOptions {
  /** Peak learning rate, reached at the end of warmup. */
  lr: number;
  warmupSteps: number;
  totalSteps: number;
  decay: Decay;
  /** Floor that linear and cosine decay towards instead of 0 (HF's min_lr); constant ignores it. */
  minLr?: number;
}

/**
 * The learning rate for optimizer update number `step`, counting from 0: the first update uses
 * `learningRate(0, …)`. This is how HF schedules index, since LambdaLR starts at last_epoch = 0 and
 * the scheduler steps after the optimizer, so with warmup the very first update has lr 0.
 *
 * Factors follow HF transformers.optimization:
 *   warmup (step < warmupSteps):  step / max(1, warmupSteps)            (all three)
 *   constant:  1                                          get_constant_schedule_with_warmup
 *   linear:    max(0, (total − step) / max(1, total − warmup))          get_linear_schedule_with_warmup
 *   cosine:    0.5·(1 + cos(π·progress)),  progress = (step − warmup) / max(1, total − warmup)
 *                                                        get_cosine_schedule_with_warmup (num_cycles 0.5)
 * With minLr, a decayed factor f becomes f·(1 − minLr/lr) + minLr/lr, as in
 * get_cosine_with_min_lr_schedule_with_warmup; linear gets the same floor.
 */
export function learningRate(step: number, options: ScheduleOptions): number {
  const { lr, warmupSteps, totalSteps, decay } = options;
  const minLr = options.minLr ?? 0;
  if (!DECAYS.includes(decay)) {
    fail("usage", `decay must be one of ${DECAYS.join(", ")}, got ${String(decay)}`, { field: "decay" });
  }
  if (!(Number.isFinite(lr) && lr >= 0)) fail("usage", `lr must be a finite number >= 0, got ${lr}`, { field: "lr" });
  if (!(Number.isInteger(totalSteps) && totalSteps >= 1)) {
    fail("usage", `totalSteps must be an integer >= 1, got ${totalSteps}`, { field: "totalSteps" });
  }
  if (!(Number.isInteger(warmupSteps) && warmupSteps >= 0 && warmupSteps <= totalSteps)) {
    fail("usage", `warmupSteps must be an integer in 0..totalSteps (${totalSteps}), got ${warmupSteps}`, {
      field: "warmupSteps",
    });
  }
  if (!(minLr >= 0 && minLr <= lr)) fail("usage", `minLr must be in [0, lr], got ${minLr}`, { field: "minLr" });
  // Past totalSteps HF's cosine would climb again; no update should ever ask for it.
  if (!(Number.isInteger(step) && step >= 0 && step <= totalSteps)) {
    fail("usage", `step must be an integer in 0..totalSteps (${totalSteps}), got ${step}`, { field: "step" });
  }

  if (step < warmupSteps) return (lr * step) / Math.max(1, warmupSteps);
  if (decay === "constant") return lr;

  const factor = decayFactor(step, warmupSteps, totalSteps, decay);
  const minRate = lr === 0 ? 0 : minLr / lr;
  return lr * (factor * (1 - minRate) + minRate);
}

function decayFactor(step: number, warmupSteps: number, totalSteps: number, decay: "linear" | "cosine"): number {
  const span = Math.max(1, totalSteps - warmupSteps);
  if (decay === "linear") return Math.max(0, (totalSteps - step) / span);
  return 0.5 * (1 + Math.cos(Math.PI * ((step - warmupSteps) / span)));
}
