import { fail } from "../util/errors.js";
import type { ModelConfig } from "./config.js";
import { type CausalLM, type WeightTensor, Weights } from "./causal-lm.js";
import { architectureFor } from "./families.js";
import { heldShape } from "./registry.js";

/**
 * Build the graph builder for a config over float32 weights keyed by canonical name, in the layout the
 * model holds them (loadWeights gives it: a heldTransposed weight already transposed). Each tensor the
 * architecture's spec lists must be there with as many values as its shape holds; others (e.g.
 * attention-bias buffers) are left out.
 */
export function buildModel(config: ModelConfig, tensors: Map<string, Float32Array>): CausalLM {
  const architecture = architectureFor(config.modelType);
  const checked = new Map<string, WeightTensor>();
  for (const spec of architecture.tensorSpec(config)) {
    const { name } = spec;
    const shape = heldShape(spec);
    const data = tensors.get(name);
    if (data === undefined) fail("weights", `the model has no weight "${name}"`, { tensor: name });
    const size = shape.reduce((a, b) => a * b, 1);
    if (data.length !== size) {
      fail("weights", `expected shape [${shape.join(", ")}] (${size} values), got ${data.length} values`, { tensor: name });
    }
    checked.set(name, { data, shape });
  }
  return architecture.build(config, new Weights(checked));
}
