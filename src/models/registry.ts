/**
 * The architecture registry: one entry per family (GPT-2; the Llama family, which also serves Mistral
 * and Qwen2; Qwen3; Gemma 2 and 3; Phi-3; OLMo 2; SmolLM3; GPT-NeoX), looked up by config.json's model_type. An entry holds everything that differs between
 * families: the config schema, the tensor spec (written once: the loader and the builder both check
 * against it), how stored names map to canonical ones, the graph builder and the position kind.
 *
 * A family lives in its own file, which ends with one `registerArchitecture(...)` call; families.ts
 * imports the built-in ones so that they are registered before any lookup.
 */
import { fail } from "../util/errors.js";
import type { ModelConfig } from "./config.js";
import type { CausalLM, Weights } from "./causal-lm.js";

/** One tensor the model loads, by canonical Hugging Face name, with its shape as stored. */
export interface TensorSpec {
  name: string;
  shape: number[];
  /**
   * A 2-D weight stored [in, out] (GPT-2's Conv1D) that the model holds [out, in], as nn.Linear stores it:
   * transposed once at load (one tensor at a time, so no second copy), because a decode step's products
   * read a weight as MLAS's unpacked operand only in that layout (see nn.linear).
   */
  heldTransposed?: true;
}

/** The shape a tensor has in memory: its stored shape, or the transpose of it for a heldTransposed weight. */
export function heldShape(spec: TensorSpec): number[] {
  return spec.heldTransposed ? [spec.shape[1], spec.shape[0]] : spec.shape;
}

/**
 * Where token positions come from: "learned" absolute position embeddings have a row per position, so
 * a sequence must end before `maxPositions`; "rotary" positions are computed and have no such end.
 */
export type PositionKind = "learned" | "rotary";

export interface Architecture<Fields extends object = object> {
  /** The config.json model_type values this family serves. */
  readonly modelTypes: readonly string[];
  readonly positions: PositionKind;
  /**
   * A prefix some checkpoints put before every name and others leave out (gpt2's "transformer."):
   * canonical names drop it.
   */
  readonly optionalPrefix?: string;
  /** Buffers checkpoints may save beside the weights (masks, rotary inv_freq), by canonical name: skipped. */
  readonly ignoredTensors: readonly RegExp[];
  /** Validate config.json (either transformers format) and normalise it; errors name the file and the field. */
  parseConfig(raw: Record<string, unknown>, modelType: string, file: string): ModelConfig<Fields>;
  /** Every tensor the model loads, by canonical name, with the shape the config implies. */
  tensorSpec(config: ModelConfig<Fields>): TensorSpec[];
  /** The graph builder, over weights already checked against tensorSpec. */
  build(config: ModelConfig<Fields>, weights: Weights): CausalLM;
}

const byModelType = new Map<string, Architecture>();

/** Register a family under each of its model types; a type registered already is an error naming it. */
export function registerArchitecture<Fields extends object>(architecture: Architecture<Fields>): void {
  for (const modelType of architecture.modelTypes) {
    if (byModelType.has(modelType)) {
      fail("config", `model_type ${JSON.stringify(modelType)} is registered twice`, { field: "model_type" });
    }
  }
  for (const modelType of architecture.modelTypes) byModelType.set(modelType, architecture);
}

/** Every registered model type, sorted. */
export function registeredModelTypes(): string[] {
  return [...byModelType.keys()].sort();
}

/** The family serving a model type, or an error listing the supported ones; `file` names the config. */
export function architectureFor(modelType: unknown, file?: string): Architecture {
  const architecture = typeof modelType === "string" ? byModelType.get(modelType) : undefined;
  if (architecture === undefined) {
    const supported = registeredModelTypes().join(", ");
    fail("config", `model_type ${JSON.stringify(modelType)} is not supported; supported: ${supported}`, {
      ...(file !== undefined ? { file } : {}),
      field: "model_type",
    });
  }
  return architecture;
}
