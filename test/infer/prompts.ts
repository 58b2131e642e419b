// Seeded random soft prompts for the inference tests.
import type { SoftPrompt } from "../../src/infer/kv-cache.js";
import { Rng } from "../../src/util/rng.js";

/** n virtual tokens of width d, drawn from a standard normal with the given seed. */
export function randomPrompt(id: string, n: number, d: number, seed: number): SoftPrompt {
  const rng = new Rng(seed);
  return { id, embeddings: Float32Array.from({ length: n * d }, () => rng.normal()), dims: [n, d] };
}
