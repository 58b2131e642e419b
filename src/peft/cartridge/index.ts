/**
 * Cartridges as a registered method (`--method cartridge`, PEFT's CARTRIDGE): the prefix-tuning table
 * [n, L·2·token_dim] trained directly, in two tensors as PEFT's CartridgeEncoder holds it — the first
 * `num_frozen_tokens` rows ("frozen_embedding": fed, never differentiated or updated) and the rest
 * ("trainable_embedding"); saved joined as PEFT's `prompt_embeddings`. Initialised from the keys/values
 * of a prefill of `initText` (PEFT's initialize_kv_prefix_from_text without a chat template), else
 * N(0, 1) as PEFT's reset_parameters.
 */
import { fail } from "../../util/errors.js";
import { Rng } from "../../util/rng.js";
import * as o from "../../graph/ops.js";
import { arangePositions, attentionPattern, idsTensor } from "../../models/inputs.js";
import { presentName, stepProgram } from "../../infer/step.js";
import type { CausalLM } from "../../models/causal-lm.js";
import { registerMethod, type PeftMethod, type Params, type Param } from "../method.js";
import { PEFT_PREFIX, type PrefixShape, checkPrefixLength, checkTable, hostPast, normalInit, pastFromTable, prefixShape, tableFromPast, tableWidth } from "../prefix-tuning/model.js";
import { type CartridgeConfig, type CartridgeOptions, cartridgeConfigSchema, cartridgeOptionsSchema } from "./config.js";

/** PEFT's parameter names in CartridgeEncoder. */
const FROZEN = "frozen_embedding";
const TRAINABLE = "trainable_embedding";

export const cartridge: PeftMethod<CartridgeOptions, CartridgeConfig> = {
  name: "cartridge",
  peftType: "CARTRIDGE",
  options: cartridgeOptionsSchema,
  config: cartridgeConfigSchema,

  makeConfig(options, { lm, baseModelName }) {
    checkPrefixLength(lm, options.numVirtualTokens, "--num-virtual-tokens");
    const { numLayers, kvHeads, tokenDim } = prefixShape(lm);
    return {
      auto_mapping: null,
      base_model_name_or_path: baseModelName,
      inference_mode: true,
      modules_to_save: null,
      num_attention_heads: kvHeads,
      num_frozen_tokens: options.numFrozenTokens,
      num_layers: numLayers,
      num_transformer_submodules: 1,
      num_virtual_tokens: options.numVirtualTokens,
      peft_type: "CARTRIDGE",
      revision: null,
      task_type: "CAUSAL_LM",
      token_dim: tokenDim,
    };
  },

  async initParams(options, { lm, tokenizer, seed }) {
    const s = prefixShape(lm);
    const n = options.numVirtualTokens;
    let table: Float32Array;
    if (options.initText === undefined) table = normalInit(new Rng(seed), n * tableWidth(s));
    else {
      const ids = tokenizer.encode(options.initText, { addSpecialTokens: true });
      if (ids.length < n) fail("usage", `--init-text gives ${ids.length} tokens, but a cartridge of --num-virtual-tokens ${n} takes the keys/values of its first ${n}: give a longer text or fewer virtual tokens`, { field: "--init-text" });
      table = await prefillTable(lm, ids.slice(0, n), s);
    }
    return splitTable(table, n, options.numFrozenTokens, s);
  },

  adapt(config, params, lm) {
    const parts = [params.get(FROZEN), params.get(TRAINABLE)].filter((p) => p !== undefined);
    const table = parts.length === 1 ? parts[0] : o.concat(parts, 0);
    return { past: pastFromTable(table, config.num_virtual_tokens, prefixShape(lm)), feeds: () => ({}) };
  },

  toPeftTensors(config, params) {
    return new Map([[PEFT_PREFIX, { shape: [config.num_virtual_tokens, tableWidth({ numLayers: config.num_layers, tokenDim: config.token_dim })], data: joinTable(params) }]]);
  },

  async fromPeftTensors(config, read, where) {
    const table = await read(PEFT_PREFIX);
    const shape = { numLayers: config.num_layers, tokenDim: config.token_dim };
    checkTable(table, config.num_virtual_tokens, shape, where);
    return splitTable(table.data, config.num_virtual_tokens, config.num_frozen_tokens, shape);
  },

  recordedDims: (lm) => ({ tokenDim: prefixShape(lm).tokenDim, numHeads: prefixShape(lm).kvHeads }),

  inferenceForm(config, params) {
    const kvHeads = config.num_attention_heads;
    const shape = { numLayers: config.num_layers, kvHeads, headDim: config.token_dim / kvHeads, tokenDim: config.token_dim };
    return { kind: "past", numVirtual: config.num_virtual_tokens, layers: hostPast(joinTable(params), config.num_virtual_tokens, shape) };
  },
};

registerMethod(cartridge);

/** The keys/values the base model computes for `ids` alone (positions 0..n-1, causal), as a table. */
async function prefillTable(lm: CausalLM, ids: number[], s: PrefixShape): Promise<Float32Array> {
  const n = ids.length;
  const out = await (await stepProgram(lm, "prefill")).run({
    ...lm.weights.feeds(),
    input_ids: idsTensor([ids]),
    position_ids: arangePositions(1, n),
    allowed: attentionPattern([Array<number>(n).fill(1)], n),
  });
  const layers = Array.from({ length: s.numLayers }, (_, l) => ({
    key: out[presentName(l, "key")].data as Float32Array,
    value: out[presentName(l, "value")].data as Float32Array,
  }));
  return tableFromPast(layers, n, n, s);
}

/** The table's first `frozen` rows, marked frozen, and the rest; a part with no rows is left out. */
function splitTable(table: Float32Array, n: number, frozen: number, s: Pick<PrefixShape, "numLayers" | "tokenDim">): Params {
  const width = tableWidth(s);
  const params: Params = new Map();
  if (frozen > 0) params.set(FROZEN, { shape: [frozen, width], data: table.slice(0, frozen * width), frozen: true });
  if (frozen < n) params.set(TRAINABLE, { shape: [n - frozen, width], data: table.slice(frozen * width) });
  return params;
}

function joinTable(params: Params): Float32Array {
  const parts = [params.get(FROZEN), params.get(TRAINABLE)].filter((p): p is Param => p !== undefined);
  const out = new Float32Array(parts.reduce((k, p) => k + p.data.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p.data, at);
    at += p.data.length;
  }
  return out;
}
