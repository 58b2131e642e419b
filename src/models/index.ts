/**
 * Loading a Hugging Face model folder (or hub id) into a CausalLM with its tokenizer.
 */
import { type Tokenizer, loadTokenizer } from "../tokenizer/index.js";
import { type ModelConfig, readModelConfig } from "./config.js";
import { loadWeights } from "./checkpoint.js";
import type { CausalLM } from "./causal-lm.js";
import { buildModel } from "./build.js";
import { resolveModelDir, type ResolveOptions } from "../formats/hub.js";
import { type QuantizeMode, quantizeModel } from "../quantize/index.js";

export type { CausalLM, ForwardArgs, ForwardResult, KV } from "./causal-lm.js";
export type { ModelConfig } from "./config.js";
export { buildModel } from "./build.js";

export interface Model {
  /** The folder the model was read from. */
  dir: string;
  config: ModelConfig;
  tokenizer: Tokenizer;
  lm: CausalLM;
}

export interface LoadOptions extends ResolveOptions {
  /** Quantise the block projections' weights for inference (int8 or int4, blocks of 32); default: float32. */
  quantize?: QuantizeMode;
}

/** `loadModel("path/to/folder")` or `loadModel("HuggingFaceTB/SmolLM2-135M")` (from the HF cache, downloading if needed). */
export async function loadModel(pathOrId: string, options: LoadOptions = {}): Promise<Model> {
  const dir = await resolveModelDir(pathOrId, options);
  const config = await readModelConfig(dir);
  const [tensors, tokenizer] = await Promise.all([loadWeights(dir, config), loadTokenizer(dir)]);
  const lm = buildModel(config, tensors);
  return { dir, config, tokenizer, lm: options.quantize === undefined ? lm : quantizeModel(lm, options.quantize) };
}
