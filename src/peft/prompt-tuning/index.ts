/**
 * Prompt tuning as a registered method: one trainable table "prompt" [n, d], saved as PEFT's
 * `prompt_embeddings`, used at inference as n virtual-token embeddings.
 */
import { fail } from "../../util/errors.js";
import { registerMethod, type PeftMethod, type Param } from "../method.js";
import { loadAdapter, saveAdapter } from "../adapter.js";
import { PEFT_INIT, effectiveInit, type PromptTuningConfig, type PromptTuningOptions, promptTuningConfigSchema, promptTuningOptionsSchema } from "./config.js";
import { initPrompt } from "./init.js";
import { promptFromAdapter } from "./init-from.js";
import { promptAdaptation } from "./model.js";

/** The name of the trainable table, and PEFT's name for it in adapter_model.safetensors. */
const PROMPT = "prompt";
const PEFT_PROMPT = "prompt_embeddings";

export const promptTuning: PeftMethod<PromptTuningOptions, PromptTuningConfig> = {
  name: "prompt",
  peftType: "PROMPT_TUNING",
  options: promptTuningOptionsSchema,
  config: promptTuningConfigSchema,

  makeConfig(options, { lm, baseModelName }) {
    const initText = options.init === "labels" ? options.labels!.join(" ") : options.init === "text" ? options.initText! : null;
    return {
      auto_mapping: null,
      base_model_name_or_path: baseModelName,
      inference_mode: true,
      modules_to_save: null,
      num_attention_heads: lm.config.numHeads,
      num_layers: lm.config.numLayers,
      num_transformer_submodules: 1,
      num_virtual_tokens: options.numVirtualTokens,
      peft_type: "PROMPT_TUNING",
      prompt_tuning_init: PEFT_INIT[effectiveInit(options)] as "RANDOM" | "TEXT" | "SAMPLE_VOCAB",
      prompt_tuning_init_text: initText,
      revision: null,
      task_type: "CAUSAL_LM",
      token_dim: lm.config.hiddenSize,
      tokenizer_kwargs: null,
      tokenizer_name_or_path: initText === null ? null : baseModelName,
    };
  },

  async initParams(options, ctx) {
    const { lm, tokenizer, seed } = ctx;
    const shape = [options.numVirtualTokens, lm.config.hiddenSize];
    const init = effectiveInit(options);
    if (init === "adapter") return new Map([[PROMPT, { shape, data: await promptFromAdapter(options.initFrom!, ctx, options.numVirtualTokens) }]]);
    const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
    const special = [...tokenizer.eosTokenIds, ...(tokenizer.bosTokenId === undefined ? [] : [tokenizer.bosTokenId])];
    const data = initPrompt({
      numVirtual: options.numVirtualTokens,
      init,
      seed,
      embeddings: lm.weights.tensor(lm.embeddingName),
      textIds: options.initText === undefined ? undefined : encode(options.initText),
      labelIds: options.labels?.map(encode),
      excludeIds: special,
    });
    return new Map([[PROMPT, { shape, data }]]);
  },

  adapt: (config, params) => promptAdaptation(params.get(PROMPT)!, config.num_virtual_tokens),

  toPeftTensors: (_config, params) => new Map([[PEFT_PROMPT, params.get(PROMPT)!]]),

  async fromPeftTensors(config, read, where) {
    if (config.num_transformer_submodules !== 1) {
      fail("adapter", `num_transformer_submodules ${config.num_transformer_submodules} is for encoder-decoder models; expected 1`, { file: where, field: "num_transformer_submodules" });
    }
    const prompt: Param = await read(PEFT_PROMPT);
    const want = [config.num_virtual_tokens, config.token_dim];
    if (prompt.shape.length !== 2 || prompt.shape[0] !== want[0] || prompt.shape[1] !== want[1]) {
      fail("adapter", `shape [${prompt.shape.join(", ")}] does not match the config's [${want.join(", ")}]`, { file: where, tensor: PEFT_PROMPT });
    }
    return new Map([[PROMPT, prompt]]);
  },

  inferenceForm: (_config, params) => ({ kind: "embeddings", embeddings: params.get(PROMPT)!.data }),
};

registerMethod(promptTuning);

/** A prompt-tuning adapter as plain data: PEFT's config and the [n, d] prompt. */
export interface PromptAdapter {
  config: PromptTuningConfig;
  /** [numVirtualTokens, tokenDim] */
  embeddings: Float32Array;
  metadata?: Record<string, string>;
}

export async function savePromptAdapter(dir: string, { config, embeddings, metadata }: PromptAdapter): Promise<void> {
  const params = new Map([[PROMPT, { shape: [config.num_virtual_tokens, config.token_dim], data: embeddings }]]);
  await saveAdapter(dir, { method: promptTuning, config, params, metadata });
}

/** Read a PEFT prompt-tuning adapter folder; an adapter of another method is refused. */
export async function loadPromptAdapter(dir: string): Promise<PromptAdapter> {
  const adapter = await loadAdapter(dir);
  if (adapter.method !== promptTuning) fail("adapter", `a ${adapter.method.peftType} adapter, not a prompt-tuning one`, { file: dir, field: "peft_type" });
  return { config: adapter.config as PromptTuningConfig, embeddings: adapter.params.get(PROMPT)!.data, metadata: adapter.metadata };
}
