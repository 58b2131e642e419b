/**
 * Prefix tuning as a registered method (`--method prefix`, PEFT's PREFIX_TUNING): trainable keys/values
 * for every layer, as one table "embedding" [n, L·2·token_dim]; or, with `prefixProjection`, an
 * embedding [n, token_dim] and PEFT's MLP, folded into the plain table for saving and inference (PEFT
 * saves only the MLP's output, so a saved adapter is inference-only, as PEFT's is; the run's checkpoint
 * keeps the MLP, so training resumes).
 */
import { fail } from "../../util/errors.js";
import { Rng } from "../../util/rng.js";
import { registerMethod, type PeftMethod, type Params } from "../method.js";
import { type PrefixTuningConfig, type PrefixTuningOptions, prefixTuningConfigSchema, prefixTuningOptionsSchema } from "./config.js";
import {
  EMBEDDING,
  MLP,
  PEFT_PREFIX,
  checkPrefixLength,
  checkTable,
  foldProjection,
  hostPast,
  linearInit,
  normalInit,
  prefixAdaptation,
  prefixShape,
  tableWidth,
} from "./model.js";

export const prefixTuning: PeftMethod<PrefixTuningOptions, PrefixTuningConfig> = {
  name: "prefix",
  peftType: "PREFIX_TUNING",
  options: prefixTuningOptionsSchema,
  config: prefixTuningConfigSchema,

  makeConfig(options, { lm, baseModelName }) {
    checkPrefixLength(lm, options.numVirtualTokens, "--num-virtual-tokens");
    const { numLayers, kvHeads, tokenDim } = prefixShape(lm);
    return {
      auto_mapping: null,
      base_model_name_or_path: baseModelName,
      encoder_hidden_size: options.encoderHiddenSize ?? tokenDim,
      inference_mode: true,
      init_weights: null,
      modules_to_save: null,
      num_attention_heads: kvHeads,
      num_layers: numLayers,
      num_transformer_submodules: 1,
      num_virtual_tokens: options.numVirtualTokens,
      peft_type: "PREFIX_TUNING",
      prefix_projection: options.prefixProjection,
      revision: null,
      task_type: "CAUSAL_LM",
      token_dim: tokenDim,
    };
  },

  initParams(options, { lm, seed }) {
    const s = prefixShape(lm);
    const n = options.numVirtualTokens;
    const rng = new Rng(seed);
    if (!options.prefixProjection) return new Map([[EMBEDDING, { shape: [n, tableWidth(s)], data: normalInit(rng, n * tableWidth(s)) }]]);
    const hidden = options.encoderHiddenSize ?? s.tokenDim;
    const out = tableWidth(s);
    return new Map([
      [EMBEDDING, { shape: [n, s.tokenDim], data: normalInit(rng, n * s.tokenDim) }],
      [MLP.w0, { shape: [hidden, s.tokenDim], data: linearInit(rng, hidden * s.tokenDim, s.tokenDim) }],
      [MLP.b0, { shape: [hidden], data: linearInit(rng, hidden, s.tokenDim) }],
      [MLP.w2, { shape: [out, hidden], data: linearInit(rng, out * hidden, hidden) }],
      [MLP.b2, { shape: [out], data: linearInit(rng, out, hidden) }],
    ]);
  },

  adapt: (config, params, lm) => prefixAdaptation(params, config.num_virtual_tokens, prefixShape(lm)),

  toPeftTensors: (_config, params) => new Map([[PEFT_PREFIX, { shape: plainShape(params), data: plainTable(params) }]]),

  async fromPeftTensors(config, read, where) {
    const table = await read(PEFT_PREFIX);
    checkTable(table, config.num_virtual_tokens, { numLayers: config.num_layers, tokenDim: config.token_dim }, where);
    if (config.token_dim % config.num_attention_heads !== 0) {
      fail("adapter", `token_dim ${config.token_dim} is not a multiple of num_attention_heads ${config.num_attention_heads}`, { file: where, field: "token_dim" });
    }
    // With prefix_projection the file holds the MLP's output, as PEFT's inference mode reads it.
    return new Map([[EMBEDDING, table]]);
  },

  recordedDims: (lm) => ({ tokenDim: prefixShape(lm).tokenDim, numHeads: prefixShape(lm).kvHeads }),

  inferenceForm(config, params) {
    const n = config.num_virtual_tokens;
    const kvHeads = config.num_attention_heads;
    const shape = { numLayers: config.num_layers, kvHeads, headDim: config.token_dim / kvHeads, tokenDim: config.token_dim };
    return { kind: "past", numVirtual: n, layers: hostPast(plainTable(params), n, shape) };
  },
};

registerMethod(prefixTuning);

/** The plain table [n, L·2·token_dim]: the MLP folded when the params hold one. */
function plainTable(params: Params): Float32Array {
  return params.has(MLP.w0) ? foldProjection(params) : params.get(EMBEDDING)!.data;
}

function plainShape(params: Params): number[] {
  const n = params.get(EMBEDDING)!.shape[0];
  return params.has(MLP.w0) ? [n, params.get(MLP.w2)!.shape[0]] : params.get(EMBEDDING)!.shape;
}
