/**
 * What a parameter-efficient method is, and the registry of methods (PEFT's `register_peft_method`).
 *
 * A method hands the trainer a map of named trainable tensors, says how they change the frozen model's
 * forward, how they are written to and read from a PEFT adapter folder, and what inference keeps of them.
 * The trainer, the adapter files, evaluation and inference know methods only through this interface;
 * each method lives in its own folder under src/peft/ and ends with one `registerMethod(...)` line.
 *
 * The forward changes a method can make, and who uses each:
 *  - embeddings placed before the text (`virtualEmbeds`): prompt tuning, P-tuning, multi-task prompts;
 *  - projections wrapped by module name (`hooks.linear`, see CausalLM's ForwardHooks): LoRA;
 *  - per-layer keys/values before the text (`past`): prefix tuning, Cartridges;
 *  - vectors spliced among the token embeddings (`spliceEmbeds`): templates' soft spans.
 */
import type { z } from "zod";
import { fail } from "../util/errors.js";
import type { Value } from "../graph/ir.js";
import type { CausalLM, ForwardHooks, KV } from "../models/causal-lm.js";
import type { Tokenizer } from "../tokenizer/index.js";
import type { Tensor } from "../runtime/session.js";
import type { Batch } from "../data/index.js";
import type { LoraFactors } from "../infer/lora.js";

/** One trainable tensor: row-major float32 values and their shape. */
export interface Param {
  shape: number[];
  data: Float32Array;
  /** Fed to the graph like the others but never differentiated or updated (Cartridges' attention sink). */
  frozen?: boolean;
}

/** A method's trainable tensors by name (the names the trainer, optimiser and checkpoint use). */
export type Params = Map<string, Param>;

/** The fields every PEFT adapter_config.json has that softprompt checks against a model. */
export interface PeftConfigBase {
  peft_type: string;
  task_type?: string | null;
  base_model_name_or_path?: string | null;
  /** Prompt-learning methods: the model's hidden size. */
  token_dim?: number;
  num_layers?: number | null;
  num_attention_heads?: number | null;
}

/** What a method may read when it creates an adapter for a model. */
export interface MethodContext {
  lm: CausalLM;
  tokenizer: Tokenizer;
  /** Recorded as base_model_name_or_path. */
  baseModelName: string;
  seed: number;
}

/** How one adapter changes a forward pass, built over its parameters as graph values. */
export interface Adaptation {
  /** [B, n, hidden]: n virtual-token embeddings placed before the token embeddings (the text starts at position n). */
  virtualEmbeds?: Value;
  /**
   * Per layer, keys and values [1, kvHeads, n, headDim] before the text (prefix tuning): always visible,
   * keys used as given (not rotated), the text at positions n.. . One per row of the batch when [B, …].
   */
  past?: KV[];
  /** Hooks into the model's forward (LoRA wraps projections). */
  hooks?: ForwardHooks;
  /** [B, T, d] token embeddings → [B, T, d] with learned vectors in place of some tokens' (templates' soft spans, src/peft/template). */
  spliceEmbeds?: (tokenEmbeds: Value) => Value;
  /**
   * Feeds for the graph inputs the adaptation declared itself, for one batch (e.g. which prompt each row uses).
   * `step` is given for a training step (its random parts, e.g. a dropout mask, are drawn from it, so a resumed
   * run draws the same); without it — validation — they are off.
   */
  feeds(batch: Batch<ArrayLike<number>>, step?: TrainingStep): Record<string, Tensor>;
}

/** Which training step a batch belongs to: a pure function of these draws the step's random parts. */
export interface TrainingStep {
  seed: number;
  step: number;
  /** The accumulation micro-batch within the step. */
  micro: number;
}

/** What inference keeps of an adapter (one variant per way a method can be served). */
export type InferenceForm =
  | {
      kind: "embeddings";
      /** [n, hidden] virtual-token embeddings, run once and cached as keys/values (see infer/kv-cache.ts). */
      embeddings: Float32Array;
    }
  | {
      kind: "past";
      numVirtual: number;
      /** Per layer, keys and values each [kvHeads, n, headDim] row-major: the cached past itself. */
      layers: { key: Float32Array; value: Float32Array }[];
    }
  | {
      kind: "lora";
      /**
       * Per adapted module, A [rank, in] and B [out, rank] with the scale folded into B; `module` is PEFT's
       * module key (`transformer.h.0.attn.c_attn`), made canonical against a model before serving.
       */
      modules: LoraFactors[];
    };

export interface PeftMethod<Options extends object = object, Config extends PeftConfigBase = PeftConfigBase> {
  /** Our name: `--method prompt`. */
  readonly name: string;
  /** PEFT's peft_type in adapter_config.json. */
  readonly peftType: string;
  /** Training options with their defaults and cross-field checks; its keys are the method's settings. */
  readonly options: z.ZodObject<z.ZodRawShape> & z.ZodType<Options>;
  /** Trainer settings this method trains best with (e.g. LoRA's smaller learning rate), where the user sets none. */
  readonly trainerDefaults?: Readonly<Record<string, unknown>>;
  /** adapter_config.json as PEFT writes it (unknown fields kept, so files round-trip). */
  readonly config: z.ZodType<Config>;
  /** The adapter_config.json of a new adapter trained with `options` on the model. */
  makeConfig(options: Options, ctx: MethodContext): Config;
  /** The trainable tensors with their initial values (may read files: a trained adapter to start from). */
  initParams(options: Options, ctx: MethodContext): Params | Promise<Params>;
  /** The forward's change, over the parameters as graph inputs (same names as `initParams`); `training` adds what only training has (e.g. LoRA dropout). */
  adapt(config: Config, params: ReadonlyMap<string, Value>, lm: CausalLM, training?: boolean): Adaptation;
  /** The tensors of adapter_model.safetensors, by PEFT's names. */
  toPeftTensors(config: Config, params: Params): Params;
  /** The trainable tensors from adapter_model.safetensors (`read` fails naming the tensor when absent; `names`: every tensor the file holds). */
  fromPeftTensors(config: Config, read: (peftName: string) => Promise<Param>, where: string, names?: readonly string[]): Promise<Params>;
  /**
   * What PEFT records as token_dim and num_attention_heads for this method on a model, when not the
   * hidden size and the heads (prefix methods: the key/value width and heads, for grouped-query attention).
   */
  recordedDims?(lm: CausalLM): { tokenDim: number; numHeads: number };
  /** Fold for inference (e.g. an encoder's output, or LoRA merged into the weights); `task` picks one of a multi-task adapter's prompts. */
  inferenceForm(config: Config, params: Params, task?: string): InferenceForm;
}

// Methods are stored with their own types erased; each entry was type-checked at its registration.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyMethod = PeftMethod<any, any>;

const byName = new Map<string, AnyMethod>();
const byPeftType = new Map<string, AnyMethod>();

/** Add a method; a second method with the same name or peft_type is refused. */
export function registerMethod<O extends object, C extends PeftConfigBase>(method: PeftMethod<O, C>): void {
  if (byName.has(method.name)) fail("usage", `a method named "${method.name}" is already registered`, { field: "name" });
  if (byPeftType.has(method.peftType)) {
    fail("usage", `peft_type "${method.peftType}" is already registered by method "${byPeftType.get(method.peftType)!.name}"`, { field: "peftType" });
  }
  byName.set(method.name, method);
  byPeftType.set(method.peftType, method);
}

/** The method `--method NAME` names. */
export function methodByName(name: string, field = "method"): AnyMethod {
  return byName.get(name) ?? fail("usage", `unknown method "${name}"; registered: ${[...byName.keys()].join(", ")}`, { field });
}

/** The method of an adapter_config.json's peft_type. */
export function methodByPeftType(peftType: unknown, file: string): AnyMethod {
  const method = typeof peftType === "string" ? byPeftType.get(peftType) : undefined;
  if (method === undefined) {
    const known = [...byPeftType.keys()].map((t) => JSON.stringify(t)).join(", ");
    fail("adapter", `peft_type ${JSON.stringify(peftType)} is not supported here; expected one of ${known}`, { file, field: "peft_type" });
  }
  return method;
}

export function registeredMethods(): string[] {
  return [...byName.keys()];
}
