import { fail } from "../util/errors.js";
import type { ModelConfig } from "./config.js";
import { tensorSpec } from "./checkpoint.js";
import { type CausalLM, type WeightTensor, Weights } from "./causal-lm.js";
import { gpt2 } from "./gpt2.js";
import { llama } from "./llama.js";

/** Build the graph builder for a config over float32 weights keyed by canonical name. */
export function buildModel(config: ModelConfig, tensors: Map<string, Float32Array>): CausalLM {
  const shapes = new Map(tensorSpec(config).map((s) => [s.name, s.shape]));
  const withShapes = new Map<string, WeightTensor>();
  for (const [name, data] of tensors) {
    const shape = shapes.get(name);
    if (shape === undefined) continue; // tensors the architecture does not use (e.g. attention-bias buffers)
    withShapes.set(name, { data, shape });
  }
  const weights = new Weights(withShapes);
  switch (config.modelType) {
    case "gpt2":
      return gpt2(config, weights);
    case "llama":
    case "mistral":
    case "qwen2":
      return llama(config, weights);
    default:
      return fail("config", `unsupported model_type "${config.modelType as string}"`, { field: "model_type" });
  }
}
