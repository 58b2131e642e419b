import { fail } from "../util/errors.js";
import { Rng } from "../util/rng.js";

export interface SplitOptions {
  /** Share of examples held out for validation, in [0, 1). */
  validFraction: number;
  /** The same seed and data give the same split. */
  seed: number;
}

/**
 * Hold out a random, reproducible share of the examples. Both parts keep the file's order
 * (training shuffles on its own). A positive fraction holds out at least one example, and at
 * least one is always left to train on.
 */
export function splitTrainValid<T>(examples: readonly T[], { validFraction, seed }: SplitOptions): { train: T[]; valid: T[] } {
  if (!(validFraction >= 0 && validFraction < 1)) {
    fail("usage", `validFraction must be in [0, 1), got ${validFraction}`, { field: "validFraction" });
  }
  const n = examples.length;
  let validCount = Math.round(n * validFraction);
  if (validFraction > 0 && validCount === 0 && n >= 2) validCount = 1;
  validCount = Math.min(validCount, Math.max(n - 1, 0));

  const order = new Rng(seed).shuffle(examples.map((_, i) => i));
  const isValid = new Uint8Array(n);
  for (const i of order.slice(0, validCount)) isValid[i] = 1;
  return {
    train: examples.filter((_, i) => isValid[i] === 0),
    valid: examples.filter((_, i) => isValid[i] === 1),
  };
}
