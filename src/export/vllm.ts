/**
 * Hand-off to vLLM: a soft prompt and an input as the prompt embeddings `vllm serve --enable-prompt-embeds`
 * takes — the prompt's n vectors followed by the input's token embeddings, one [n + T, hidden] tensor,
 * `torch.save`d and base64-encoded in the `prompt_embeds` field of a completions request. vLLM loads it
 * with `torch.load(BytesIO(b64decode(...)), weights_only=True)` and runs the model on it from position 0,
 * so the text sits at positions n.. as it does here (and in PEFT's prompt tuning).
 * Reference: vLLM docs/features/prompt_embeds.md, vllm/renderers/embed_utils.py (`safe_load_prompt_embeds`).
 */
import { fail } from "../util/errors.js";
import * as o from "../graph/ops.js";
import { Program } from "../runtime/session.js";
import { writeFileAtomic } from "../util/fs.js";
import { type Model, loadModel } from "../models/index.js";
import type { CausalLM } from "../models/causal-lm.js";
import type { Tokenizer } from "../tokenizer/index.js";
import type { SoftPrompt } from "../infer/kv-cache.js";
import { checkPositions } from "../infer/layout.js";
import { loadSoftPrompt } from "../workflows.js";
import { type TorchDtype, torchSave } from "./torch-save.js";

/** One row-major float32 tensor. */
export interface HostTensor {
  data: Float32Array;
  dims: [number, number];
}

/**
 * [n + T, hidden]: the soft prompt's vectors, then the embeddings of the input's tokens (with the
 * tokenizer's special tokens, as `generate` encodes a text) as the model's own embedding layer gives them.
 */
export async function promptEmbeds(lm: CausalLM, tokenizer: Tokenizer, prompt: SoftPrompt, text: string): Promise<HostTensor & { inputTokens: number }> {
  const d = lm.config.hiddenSize;
  const ids = tokenizer.encode(text);
  if (ids.length === 0) fail("usage", "the input is empty: give at least one token", { field: "input" });
  const n = prompt.embeddings.length / d;
  if (!Number.isInteger(n)) fail("adapter", `the soft prompt has ${prompt.embeddings.length} values, not a whole number of ${d}-wide vectors`, { field: "adapter" });
  checkPositions(lm, n + ids.length - 1, "input");
  // The model's embed (not a plain table lookup), so an architecture that scales its embeddings is exported as it runs.
  const tokens = o.input("input_ids", "int64", [1, ids.length]);
  const program = await Program.compile({ embeds: lm.embed(tokens) });
  const { embeds } = await program.run({ ...lm.weights.feeds(), input_ids: { data: BigInt64Array.from(ids, BigInt), dims: [1, ids.length] } });
  const data = new Float32Array((n + ids.length) * d);
  data.set(prompt.embeddings, 0);
  data.set(embeds.data as Float32Array, n * d);
  return { data, dims: [n + ids.length, d], inputTokens: ids.length };
}

/** The body of a request to vLLM's `POST /v1/completions` (greedy, as `softprompt generate` is by default). */
export interface VllmCompletionRequest {
  model: string;
  /** base64 of `torch.save(tensor)`, tensor [seq, hidden]. */
  prompt_embeds: string;
  max_tokens: number;
  temperature: number;
}

export function vllmCompletionRequest(embeds: HostTensor, options: { model: string; maxTokens: number; dtype?: TorchDtype }): VllmCompletionRequest {
  const bytes = torchSave(embeds.data, embeds.dims, options.dtype ?? "float32");
  return { model: options.model, prompt_embeds: Buffer.from(bytes).toString("base64"), max_tokens: options.maxTokens, temperature: 0 };
}

export interface ExportEmbedsOptions {
  /** A model folder or hub id (the adapter's base). */
  model: string;
  /** A PEFT adapter folder whose method places vectors before the text (prompt tuning, P-tuning). */
  adapter: string;
  input: string;
  /** Where to write the request as JSON; without it, only returned. */
  output?: string;
  /** The request's `model`: the name vLLM serves the base under (`--served-model-name`); default `model`. */
  servedModelName?: string;
  /** Default 32, as `softprompt generate`'s --max-new-tokens. */
  maxTokens?: number;
  /** Default float32; vLLM casts to the model's dtype. */
  dtype?: TorchDtype;
}

export interface ExportEmbedsResult {
  request: VllmCompletionRequest;
  output?: string;
  virtualTokens: number;
  inputTokens: number;
  /** [virtualTokens + inputTokens, hidden]. */
  shape: [number, number];
  dtype: TorchDtype;
  /** What could not be checked against the model (PEFT-written adapters carry no fingerprint). */
  warnings: string[];
}

/** `softprompt export-embeds`: the vLLM completions request for an input after an adapter's soft prompt. */
export async function exportEmbeds(options: ExportEmbedsOptions, loaded?: Model): Promise<ExportEmbedsResult> {
  const model = loaded ?? (await loadModel(options.model));
  const { adapter, prompt, warnings } = await loadSoftPrompt(options.adapter, model, options.model);
  if (!("embeddings" in prompt)) {
    // Prefix methods hold keys/values per layer, LoRA changes the weights: neither is a sequence of input vectors.
    fail("usage", `${options.adapter} is a ${adapter.method.name} adapter (${adapter.method.peftType}); vLLM's prompt embeddings take only adapters that place vectors before the text (prompt tuning, P-tuning)`, { field: "adapter" });
  }
  const maxTokens = options.maxTokens ?? 32;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) fail("usage", `must be a positive integer, got ${maxTokens}`, { field: "maxTokens" });
  const dtype = options.dtype ?? "float32";
  if (dtype !== "float32" && dtype !== "bfloat16") fail("usage", `must be "float32" or "bfloat16", got ${JSON.stringify(dtype)}`, { field: "dtype" });
  const embeds = await promptEmbeds(model.lm, model.tokenizer, prompt, options.input);
  const request = vllmCompletionRequest(embeds, { model: options.servedModelName ?? options.model, maxTokens, dtype });
  if (options.output !== undefined) await writeFileAtomic(options.output, JSON.stringify(request) + "\n");
  return {
    request,
    ...(options.output === undefined ? {} : { output: options.output }),
    virtualTokens: embeds.dims[0] - embeds.inputTokens,
    inputTokens: embeds.inputTokens,
    shape: embeds.dims,
    dtype,
    warnings,
  };
}
