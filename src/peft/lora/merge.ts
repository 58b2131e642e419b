/**
 * LoRA merged into the weights, for single-adapter inference: W' = W + B·A (scale already in B) for each
 * adapted projection, laid out as the model holds W ([out, in]; GPT-2's Conv1D, stored [in, out] as PEFT's
 * fan_in_fan_out says, is held transposed). The result is a CausalLM over new Weights that hold a merged copy of just the adapted
 * weights and share every other tensor with the base (the same arrays, never copied).
 *
 * Memory: one float32 copy of each adapted weight, Σ in·out·4 bytes — e.g. GPT-2 small with c_attn
 * adapted: 12 × 768 × 2304 × 4 B ≈ 85 MB; SmolLM2-135M with q_proj and v_proj: 30 × (576·576 + 576·192)
 * × 4 B ≈ 53 MB — plus the merged model's own compiled programs (ONNX Runtime sessions are per model).
 * Serving several adapters at once is what the unmerged path (infer/lora.ts) is for.
 */
import { fail } from "../../util/errors.js";
import type { CausalLM } from "../../models/causal-lm.js";
import { buildModel } from "../../models/build.js";
import { type LoraFactors, checkLoraPrompt, projections } from "../../infer/lora.js";

/** A model that computes the base model with the adapter's updates folded into its weights. */
export function mergeLora(lm: CausalLM, modules: readonly LoraFactors[]): CausalLM {
  checkLoraPrompt(lm, { id: "merge", modules }, "modules");
  const byName = new Map(projections(lm).map((p) => [p.module, p]));
  const tensors = new Map(lm.weights.names().map((name) => [name, lm.weights.tensor(name).data]));
  for (const f of modules) {
    const p = byName.get(f.module)!;
    const name = `${f.module}.weight`;
    const merged = Float32Array.from(tensors.get(name)!);
    const [inF, outF, r] = [p.inFeatures, p.outFeatures, f.rank];
    for (let out = 0; out < outF; out++) {
      for (let inp = 0; inp < inF; inp++) {
        let delta = 0;
        for (let k = 0; k < r; k++) delta += f.b[out * r + k] * f.a[k * inF + inp];
        merged[p.layout === "out_in" ? out * inF + inp : inp * outF + out] += delta;
      }
    }
    if (!merged.every(Number.isFinite)) fail("adapter", `merging overflowed: ${name} holds a non-finite value`, { tensor: name });
    tensors.set(name, merged);
  }
  return buildModel(lm.config, tensors);
}
