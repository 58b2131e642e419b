/**
 * A soft prompt's start from "K pooled segments" of the hard prompt: its tokens cut into K contiguous
 * segments of near-equal length, each vector the mean of one segment's token embeddings. Unlike the
 * first K tokens, every part of the prompt (the instruction, each worked example, the closing tag) has
 * a say in where training starts.
 */
import { fail } from "../util/errors.js";
import type { Model } from "../models/index.js";
import { BASE_FINGERPRINT, baseFingerprint } from "../peft/adapter.js";
import { promptTuning, savePromptAdapter } from "../peft/prompt-tuning/index.js";

/** [k, d]: the mean embedding of each of the k segments [⌊s·n/k⌋, ⌊(s+1)·n/k⌋) of `ids` (n ≥ k). */
export function poolSegments(embeddings: { data: Float32Array; shape: readonly number[] }, ids: readonly number[], k: number): Float32Array {
  const n = ids.length;
  if (k < 1 || k > n) fail("usage", `${k} pooled segments of a ${n}-token prompt: each segment needs a token`, { field: "numVirtualTokens" });
  const d = embeddings.shape[1];
  const out = new Float32Array(k * d);
  for (let s = 0; s < k; s++) {
    const [from, to] = [Math.floor((s * n) / k), Math.floor(((s + 1) * n) / k)];
    for (let t = from; t < to; t++) {
      const row = embeddings.data.subarray(ids[t] * d, (ids[t] + 1) * d);
      for (let j = 0; j < d; j++) out[s * d + j] += row[j] / (to - from);
    }
  }
  return out;
}

/** Write the pooled start of a k-vector prompt as a prompt-tuning adapter in `dir` (for the trainer's initFrom). */
export async function pooledPrompt(model: Model, modelName: string, teacherText: string, k: number, dir: string): Promise<void> {
  const { lm, tokenizer } = model;
  const embeddings = lm.weights.tensor(lm.embeddingName);
  const ids = tokenizer.encode(teacherText, { addSpecialTokens: false }); // as text init encodes its text
  const config = promptTuning.makeConfig({ numVirtualTokens: k, init: "random" }, { lm, tokenizer, baseModelName: modelName, seed: 0 });
  await savePromptAdapter(dir, { config, embeddings: poolSegments(embeddings, ids, k), metadata: { [BASE_FINGERPRINT]: baseFingerprint(embeddings.data) } });
}
