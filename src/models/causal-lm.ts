/**
 * What every architecture provides: graph builders over frozen weights that enter every graph as
 * named inputs (one copy in memory, fed to every program), taking input *embeddings* so soft prompts
 * can be placed before the token embeddings.
 */
import { fail } from "../util/errors.js";
import type { Value } from "../graph/ir.js";
import type { HeadRows } from "../graph/nn.js";
import * as o from "../graph/ops.js";
import type { Tensor } from "../runtime/session.js";
import type { ModelConfig } from "./config.js";

/** Keys and values of one layer: [B, kvHeads, S, headDim]. */
export interface KV {
  key: Value;
  value: Value;
  /**
   * A past the caller keeps itself (inference's KV cache, see infer/step.ts): attention reads it beside the new
   * keys/values without joining them, and the layer's presents are the new columns alone.
   */
  held?: true;
}

/** Where an adapter may change a forward pass. */
export interface ForwardHooks {
  /**
   * Called for every projection in the blocks with the module's canonical Hugging Face path (its
   * weight's name less `.weight`: `model.layers.0.self_attn.q_proj`, gpt2 `h.0.attn.c_attn`), its input
   * x [..., in] and the frozen output y [..., out]; returns the output to use (LoRA: y + scale·(x·Aᵀ)·Bᵀ).
   */
  linear?: (module: string, x: Value, y: Value) => Value;
}

export interface ForwardArgs {
  /** [B, T, hidden]: token embeddings, with any soft prompt already in place. */
  inputsEmbeds: Value;
  /** [B, T] int64 position of each token. */
  positions: Value;
  /** [B, 1, T, S] bool: may query t attend to key s (S = past length + T): causal and padding. */
  allowed: Value;
  /** Per layer, keys and values that come before this call's tokens (a KV cache, or a prefix). */
  past?: KV[];
  /** Where adapters (LoRA) change the frozen model's computation; none: the frozen model itself. */
  hooks?: ForwardHooks;
}

export interface ForwardResult {
  /** [B, T, hidden] after the final norm. */
  hidden: Value;
  /** HF's hidden_states: the embeddings, the output of each block but the last, then `hidden`. */
  hiddenStates: Value[];
  /** Per layer, past and new keys/values together (the next call's `past`). */
  presents: KV[];
}

export interface CausalLM {
  readonly config: ModelConfig;
  readonly weights: Weights;
  /** The name of the token-embedding table [vocab, hidden] (for prompt initialisation and inspection). */
  readonly embeddingName: string;
  /** Token ids [B, T] (int64) → embeddings [B, T, hidden]. */
  embed(ids: Value): Value;
  forward(args: ForwardArgs): ForwardResult;
  /** Hidden states [N, hidden] → logits [N, vocab]; `rows` "few" when N is the batch (a step's last position). */
  lmHead(hidden: Value, rows?: HeadRows): Value;
}

export interface WeightTensor {
  data: Float32Array;
  shape: number[];
}

/** The frozen weights by name, each a graph input that is fed from the one host copy. */
export class Weights {
  private readonly inputs = new Map<string, Value>();
  private allFeeds?: Record<string, Tensor>;

  constructor(private readonly tensors: Map<string, WeightTensor>) {}

  /** The graph input for a weight; the same value in every graph built over these weights. */
  get(name: string): Value {
    let v = this.inputs.get(name);
    if (v === undefined) {
      const t = this.tensors.get(name);
      if (t === undefined) fail("weights", `the model has no weight "${name}"`, { tensor: name });
      v = o.input(name, "float32", t.shape);
      this.inputs.set(name, v);
    }
    return v;
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  tensor(name: string): WeightTensor {
    const t = this.tensors.get(name);
    if (t === undefined) fail("weights", `the model has no weight "${name}"`, { tensor: name });
    return t;
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  /** Every weight as a feed over its host array (never copied), for any program; extra feeds are ignored. */
  feeds(): Record<string, Tensor> {
    if (this.allFeeds === undefined) {
      this.allFeeds = {};
      for (const [name, t] of this.tensors) this.allFeeds[name] = { data: t.data, dims: t.shape };
    }
    return this.allFeeds;
  }

}
