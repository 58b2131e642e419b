/**
 * Initial prompt vectors, as in Lester et al. 2021 §3.2 and PEFT: random, sampled vocabulary,
 * the embeddings of a text, or the embeddings of the class label words first.
 */
import { fail } from "../../util/errors.js";
import { Rng } from "../../util/rng.js";
import type { WeightTensor } from "../../models/causal-lm.js";
import type { PromptInit } from "./config.js";

export interface InitOptions {
  numVirtual: number;
  /** Inits drawn from the model (an adapter's prompt is read by init-from.ts). */
  init: Exclude<PromptInit, "adapter">;
  seed: number;
  /** The model's token embeddings [vocab, d]. */
  embeddings: WeightTensor;
  /** Token ids of the init text ("text"), in order. */
  textIds?: number[];
  /** Token ids of each label word ("labels"). */
  labelIds?: number[][];
  /** Ids never sampled for "vocab" (special tokens). */
  excludeIds?: readonly number[];
}

export function initPrompt(options: InitOptions): Float32Array {
  const { numVirtual: n, embeddings } = options;
  const d = embeddings.shape[1];
  const rng = new Rng(options.seed);
  const out = new Float32Array(n * d);
  const row = (id: number) => embeddings.data.subarray(id * d, (id + 1) * d);
  const sampleVocab = (): number[] => {
    const excluded = new Set(options.excludeIds ?? []);
    return Array.from({ length: n }, () => {
      let id: number;
      do id = rng.int(embeddings.shape[0]);
      while (excluded.has(id) && excluded.size < embeddings.shape[0]);
      return id;
    });
  };
  switch (options.init) {
    case "random":
      // Lester et al.: uniform in [-0.5, 0.5].
      for (let i = 0; i < out.length; i++) out[i] = rng.next() - 0.5;
      return out;
    case "vocab":
      sampleVocab().forEach((id, i) => out.set(row(id), i * d));
      return out;
    case "text": {
      const ids = options.textIds ?? [];
      if (ids.length === 0) fail("usage", "text initialisation needs a non-empty init text", { field: "initText" });
      // PEFT: repeat the text's tokens to fill the prompt, then cut to length.
      for (let i = 0; i < n; i++) out.set(row(ids[i % ids.length]), i * d);
      return out;
    }
    case "labels": {
      const labels = options.labelIds ?? [];
      if (labels.length === 0 || labels.some((l) => l.length === 0)) {
        fail("usage", "label initialisation needs at least one non-empty label word", { field: "labels" });
      }
      // Each label's vector is the mean of its tokens' embeddings; the rest is sampled vocabulary.
      const rest = sampleVocab();
      for (let i = 0; i < n; i++) {
        if (i >= labels.length) {
          out.set(row(rest[i]), i * d);
          continue;
        }
        for (const id of labels[i]) {
          const r = row(id);
          for (let k = 0; k < d; k++) out[i * d + k] += r[k] / labels[i].length;
        }
      }
      return out;
    }
  }
}
