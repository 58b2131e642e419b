/**
 * P-tuning as a registered method (PEFT P_TUNING): virtual tokens produced by a prompt encoder (see
 * encoder.ts), trained end to end. The trainer's tensors are the encoder's, under PEFT's module names,
 * and its checkpoint keeps them all; the adapter holds what PEFT saves, the encoder's output
 * `prompt_embeddings` [n, d], which is also what inference uses.
 */
import { fail } from "../../util/errors.js";
import { registerMethod, type PeftMethod, type Params } from "../method.js";
import { promptAdaptation } from "../prompt-tuning/model.js";
import { PEFT_ENCODER_TYPE, type PTuningConfig, type PTuningOptions, pTuningConfigSchema, pTuningOptionsSchema } from "./config.js";
import { type EncoderSpec, INPUT, encode, initEncoder } from "./encoder.js";
import { encoderFrom } from "./init-from.js";
import { graphOps, hostOps, matrixOf } from "./ops.js";

/** PEFT's name for the saved output; also our name for it in an adapter read back (which has no encoder). */
const PEFT_PROMPT = "prompt_embeddings";

function specOf(config: PTuningConfig): EncoderSpec {
  return {
    type: config.encoder_reparameterization_type === "LSTM" ? "lstm" : "mlp",
    numVirtual: config.num_virtual_tokens,
    tokenDim: config.token_dim,
    hidden: config.encoder_hidden_size,
    numLayers: config.encoder_num_layers,
  };
}

/** The virtual-token embeddings [n, d]: the encoder's output, or the stored output of an adapter read from disk. */
export function pTuningPrompt(config: PTuningConfig, params: Params): Float32Array {
  if (!params.has(INPUT)) return params.get(PEFT_PROMPT)!.data;
  return Float32Array.from(encode(hostOps, (name) => matrixOf(params.get(name)!), specOf(config)).data);
}

export const pTuning: PeftMethod<PTuningOptions, PTuningConfig> = {
  name: "ptuning",
  peftType: "P_TUNING",
  options: pTuningOptionsSchema,
  // The encoder's weights move its whole output: a smaller step than a prompt's (reverse on the tiny model: 100% at 0.01).
  trainerDefaults: { lr: 0.01 },
  config: pTuningConfigSchema,

  makeConfig(options, { lm, baseModelName }) {
    return {
      auto_mapping: null,
      base_model_name_or_path: baseModelName,
      encoder_dropout: options.encoderDropout,
      encoder_hidden_size: options.encoderHiddenSize ?? lm.config.hiddenSize,
      encoder_num_layers: options.encoderNumLayers,
      encoder_reparameterization_type: PEFT_ENCODER_TYPE[options.encoderReparameterizationType],
      inference_mode: true,
      modules_to_save: null,
      num_attention_heads: lm.config.numHeads,
      num_layers: lm.config.numLayers,
      num_transformer_submodules: 1,
      num_virtual_tokens: options.numVirtualTokens,
      peft_type: "P_TUNING",
      revision: null,
      task_type: "CAUSAL_LM",
      token_dim: lm.config.hiddenSize,
    };
  },

  async initParams(options, ctx) {
    const spec = specOf(pTuning.makeConfig(options, ctx));
    return options.initFrom === undefined ? initEncoder(spec, ctx.seed) : encoderFrom(options.initFrom, spec, ctx);
  },

  adapt(config, params) {
    const table = params.has(INPUT) ? encode(graphOps, (name) => params.get(name)!, specOf(config)) : params.get(PEFT_PROMPT)!;
    return promptAdaptation(table, config.num_virtual_tokens);
  },

  toPeftTensors: (config, params) => new Map([[PEFT_PROMPT, { shape: [config.num_virtual_tokens, config.token_dim], data: pTuningPrompt(config, params) }]]),

  async fromPeftTensors(config, read, where) {
    if (config.num_transformer_submodules !== 1) {
      fail("adapter", `num_transformer_submodules ${config.num_transformer_submodules} is for encoder-decoder models; expected 1`, { file: where, field: "num_transformer_submodules" });
    }
    const prompt = await read(PEFT_PROMPT);
    const want = [config.num_virtual_tokens, config.token_dim];
    if (prompt.shape.join() !== want.join()) fail("adapter", `shape [${prompt.shape.join(", ")}] does not match the config's [${want.join(", ")}]`, { file: where, tensor: PEFT_PROMPT });
    return new Map([[PEFT_PROMPT, prompt]]);
  },

  inferenceForm: (config, params) => ({ kind: "embeddings", embeddings: pTuningPrompt(config, params) }),
};

registerMethod(pTuning);
