/**
 * LoRA as a registered method (`--method lora`, PEFT's LORA; Hu et al. 2021): for each targeted
 * projection a trainable pair A [r, in], B [out, r], named `<PEFT module key>.lora_A` / `.lora_B` (the
 * file's `base_model.model.<key>.lora_A.weight` less PEFT's wrapper), changing the forward through the
 * model's `linear` hook. At inference it is served merged (merge.ts: one adapter, no extra work per
 * token) or unmerged, several adapters in one batch (infer/lora.ts).
 */
import { fail } from "../../util/errors.js";
import { Rng } from "../../util/rng.js";
import type { CausalLM } from "../../models/causal-lm.js";
import { isHeldTransposed } from "../../models/checkpoint.js";
import { registerMethod, type Param, type Params, type PeftMethod } from "../method.js";
import { ALL_LINEAR, DEFAULT_TARGETS, type LoraConfig, type LoraOptions, loraConfigSchema, loraOptionsSchema } from "./config.js";
import { LoraDropout, initFactors, loraHooks, loraScale } from "./layer.js";
import { type Target, isAllLinear, moduleOfKey, resolveTargets, checkRank } from "./targets.js";

const A = ".lora_A";
const B = ".lora_B";
/** PEFT's tensor names: the module under base_model.model, then lora_A/lora_B's weight. */
const PEFT_NAME = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/;
const peftName = (key: string, which: "A" | "B") => `base_model.model.${key}.lora_${which}.weight`;

export const lora: PeftMethod<LoraOptions, LoraConfig> = {
  name: "lora",
  peftType: "LORA",
  options: loraOptionsSchema,
  config: loraConfigSchema,
  // A and B move the model's own projections: a smaller step than a prompt's (reverse on the tiny model, 200 steps: 99% at 0.01, 83% at 0.003).
  trainerDefaults: { lr: 0.01 },

  makeConfig(options, { lm, baseModelName }) {
    const targets = optionTargets(options, lm);
    const resolved = resolveTargets(lm, { target_modules: targets, exclude_modules: options.excludeModules }, { field: "--target-modules", excludeField: "--exclude-modules" });
    checkRank(options.r, resolved, { field: "--r" });
    // Every key PEFT 0.21 writes, with its defaults (peft_version is added when saving).
    return {
      alora_invocation_tokens: null,
      alpha_pattern: {},
      arrow_config: null,
      auto_mapping: null,
      base_model_name_or_path: baseModelName,
      bias: "none",
      corda_config: null,
      ensure_weight_tying: false,
      eva_config: null,
      exclude_modules: options.excludeModules ?? null,
      fan_in_fan_out: resolved.some((t) => isHeldTransposed(lm.config, `${t.module}.weight`)), // stored [in, out] (Conv1D)
      inference_mode: true,
      init_lora_weights: true,
      kasa_config: null,
      layer_replication: null,
      layers_pattern: null,
      layers_to_transform: null,
      loftq_config: {},
      lora_alpha: options.loraAlpha,
      lora_bias: false,
      lora_dropout: options.loraDropout,
      lora_ga_config: null,
      megatron_config: null,
      megatron_core: "megatron.core",
      modules_to_save: null,
      monteclora_config: null,
      peft_type: "LORA",
      qalora_group_size: 16,
      r: options.r,
      rank_pattern: {},
      revision: null,
      target_modules: targets,
      target_parameters: null,
      task_type: "CAUSAL_LM",
      trainable_token_indices: null,
      use_bdlora: null,
      use_dora: false,
      use_qalora: false,
      use_rslora: options.useRslora,
      velora_config: null,
    };
  },

  initParams(options, { lm, seed }) {
    const rng = new Rng(seed);
    const params: Params = new Map();
    const targets = resolveTargets(lm, { target_modules: optionTargets(options, lm), exclude_modules: options.excludeModules }, { field: "--target-modules", excludeField: "--exclude-modules" });
    for (const t of targets) {
      const { a, b } = initFactors(rng, options.r, t.inFeatures, t.outFeatures);
      params.set(t.key + A, { shape: [options.r, t.inFeatures], data: a });
      params.set(t.key + B, { shape: [t.outFeatures, options.r], data: b });
    }
    return params;
  },

  adapt(config, params, lm, training = false) {
    const shapes = new Map([...params].map(([name, v]) => [name, { shape: v.shape as number[] }]));
    const factors = new Map(checkLoraAdapter(lm, config, shapes).map((t) => [t.module, { a: params.get(t.key + A)!, b: params.get(t.key + B)! }]));
    // Dropout is training's alone: validation feeds its masks as ones, evaluation and inference build none.
    const dropout = training && config.lora_dropout > 0 ? new LoraDropout(config.lora_dropout) : undefined;
    return { hooks: loraHooks(factors, loraScale(config), dropout), feeds: (batch, step) => dropout?.feeds(batch, step) ?? {} };
  },

  toPeftTensors(_config, params) {
    const out: Params = new Map();
    for (const [name, p] of params) {
      const which = name.endsWith(A) ? "A" : "B";
      out.set(peftName(name.slice(0, -A.length), which), p);
    }
    return out;
  },

  async fromPeftTensors(config, read, where, names) {
    if (names === undefined) fail("adapter", "LoRA adapters are read by their tensor names, which were not given", { file: where });
    const params: Params = new Map();
    for (const name of names) {
      const m = PEFT_NAME.exec(name);
      if (m === null) fail("adapter", `${name} is not a LoRA factor (expected base_model.model.<module>.lora_A.weight or .lora_B.weight; DoRA, LoRA biases and embedding LoRA are not supported)`, { file: where, tensor: name });
      const p: Param = await read(name);
      const [key, which] = [m[1], m[2] as "A" | "B"];
      if (p.shape.length !== 2 || p.shape[which === "A" ? 0 : 1] !== config.r) {
        fail("adapter", `shape [${p.shape.join(", ")}] does not have the config's rank r = ${config.r} (lora_A is [r, in], lora_B [out, r])`, { file: where, tensor: name });
      }
      params.set(key + (which === "A" ? A : B), p);
    }
    for (const name of params.keys()) {
      const pair = name.endsWith(A) ? name.slice(0, -A.length) + B : name.slice(0, -B.length) + A;
      if (!params.has(pair)) fail("adapter", `${peftName(pair.slice(0, -A.length), pair.endsWith(A) ? "A" : "B")} is missing: each module needs lora_A and lora_B`, { file: where });
    }
    if (params.size === 0) fail("adapter", "holds no LoRA tensors", { file: where });
    return params;
  },

  inferenceForm(config, params) {
    const scale = loraScale(config);
    const modules = [...params.keys()]
      .filter((name) => name.endsWith(A))
      .map((name) => {
        const key = name.slice(0, -A.length);
        const a = params.get(name)!;
        return { module: key, rank: a.shape[0], a: a.data, b: params.get(key + B)!.data.map((v) => v * scale) };
      });
    return { kind: "lora", modules };
  },
};

registerMethod(lora);

/** The options' target_modules: as given (all-linear written as the projections' names, as PEFT expands it), else PEFT's default for the architecture. */
function optionTargets(options: LoraOptions, lm: CausalLM): string[] {
  const given = options.targetModules;
  if (given === undefined) {
    return DEFAULT_TARGETS[lm.config.modelType] ?? fail("usage", `no default target modules for model_type ${JSON.stringify(lm.config.modelType)}; give --target-modules (e.g. ${ALL_LINEAR})`, { field: "--target-modules" });
  }
  if (isAllLinear(given)) return [...new Set(resolveTargets(lm, { target_modules: ALL_LINEAR }, { field: "--target-modules", excludeField: "--exclude-modules" }).map((t) => t.key.split(".").pop()!))];
  return [...given];
}

/**
 * A LoRA adapter against a model: its target_modules must pick projections the model has, its rank fit
 * them, and its tensors be one [r, in] / [out, r] pair for exactly those modules. Returns the targets.
 */
export function checkLoraAdapter(lm: CausalLM, config: LoraConfig, params: ReadonlyMap<string, { shape: readonly number[] }>, file?: string): Target[] {
  const targets = resolveTargets(lm, config, { file, field: "target_modules", excludeField: "exclude_modules" });
  checkRank(config.r, targets, { file, field: "r" });
  const held = new Set([...params.keys()].filter((n) => n.endsWith(A)).map((n) => n.slice(0, -A.length)));
  const wanted = new Set(targets.map((t) => t.key));
  const missing = [...wanted].filter((k) => !held.has(k));
  const extra = [...held].filter((k) => !wanted.has(k));
  if (missing.length > 0) fail("adapter", `no lora_A/lora_B for ${missing.join(", ")}, which target_modules picks on this model`, { file, field: "target_modules" });
  if (extra.length > 0) fail("adapter", `lora_A/lora_B for ${extra.join(", ")}, which target_modules does not pick on this model`, { file, field: "target_modules" });
  for (const t of targets) {
    const [a, b] = [params.get(t.key + A)!.shape, params.get(t.key + B)!.shape];
    if (a[0] !== config.r || a[1] !== t.inFeatures || b[0] !== t.outFeatures || b[1] !== config.r) {
      fail("adapter", `lora_A [${a.join(", ")}] / lora_B [${b.join(", ")}] do not fit ${t.key}: expected [${config.r}, ${t.inFeatures}] / [${t.outFeatures}, ${config.r}]`, { file, tensor: peftName(t.key, "A") });
    }
  }
  return targets;
}

/** Canonical module names of a LoRA inference form (PEFT keys) on a model: what the forward's hook is called with. */
export function canonicalModules<T extends { module: string }>(lm: CausalLM, modules: readonly T[]): T[] {
  return modules.map((f) => ({ ...f, module: moduleOfKey(lm, f.module) }));
}
