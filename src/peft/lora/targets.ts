/**
 * Which projections a LoRA adapter changes, matched as PEFT matches them (check_target_module_exists):
 * against each module's name in the Hugging Face *ForCausalLM model — PEFT's module key, e.g.
 * `model.layers.0.self_attn.q_proj`, or GPT-2's `transformer.h.0.attn.c_attn` — a list entry matching
 * the whole name or its last dotted parts, a single string as a regular expression over the whole
 * name, and "all-linear" every projection (never the LM head). Our canonical names drop GPT-2's
 * optional `transformer.` prefix; PEFT's keys keep it, whatever the checkpoint's tensors are called.
 */
import { fail } from "../../util/errors.js";
import type { CausalLM } from "../../models/causal-lm.js";
import { architectureFor } from "../../models/families.js";
import { canonicalName } from "../../models/checkpoint.js";
import { type Projection, describeModules, projections } from "../../infer/lora.js";
import { ALL_LINEAR } from "./config.js";

/** A projection LoRA adapts, with PEFT's name for it. */
export interface Target extends Projection {
  /** PEFT's module key: `base_model.model.<key>.lora_A.weight` in adapter files. */
  key: string;
}

/** PEFT's module key of a canonical module name. */
export function peftKey(lm: CausalLM, module: string): string {
  return (architectureFor(lm.config.modelType).optionalPrefix ?? "") + module;
}

/** The canonical module name of a PEFT module key. */
export const moduleOfKey = (lm: CausalLM, key: string): string => canonicalName(lm.config, key);

type Spec = string | readonly string[];

/** Whether a module key matches target_modules (or exclude_modules): PEFT's rules. */
export function matchesSpec(spec: Spec, key: string, field: string, where?: string): boolean {
  if (isAllLinear(spec)) return true;
  if (typeof spec === "string") return fullMatch(spec, field, where).test(key);
  return spec.some((t) => key === t || key.endsWith(`.${t}`));
}

export function isAllLinear(spec: Spec): boolean {
  const one = typeof spec === "string" ? spec : spec.length === 1 ? spec[0] : undefined;
  return one?.toLowerCase() === ALL_LINEAR;
}

function fullMatch(pattern: string, field: string, where?: string): RegExp {
  try {
    return new RegExp(`^(?:${pattern})$`);
  } catch (err) {
    return fail("config", `${JSON.stringify(pattern)} is not a regular expression: ${(err as Error).message}`, { file: where, field }, err);
  }
}

/**
 * The model's projections that target_modules picks and exclude_modules leaves, in forward order. None
 * matching is an error that lists the modules the model has.
 */
export function resolveTargets(lm: CausalLM, spec: { target_modules: Spec; exclude_modules?: Spec | null }, place: { file?: string; field: string; excludeField: string }): Target[] {
  const all = projections(lm).map((p) => ({ ...p, key: peftKey(lm, p.module) }));
  const matched = all.filter((t) => matchesSpec(spec.target_modules, t.key, place.field, place.file));
  if (matched.length === 0) {
    const asRegex = typeof spec.target_modules === "string" ? " (one string is a regular expression over the whole name, as in PEFT; a list takes names and suffixes)" : "";
    fail("config", `${JSON.stringify(spec.target_modules)} matches no module of this model${asRegex}; it has ${describeModules(lm)}, or "${ALL_LINEAR}"`, { file: place.file, field: place.field });
  }
  const exclude = spec.exclude_modules;
  const kept = exclude == null ? matched : matched.filter((t) => !matchesSpec(exclude, t.key, place.excludeField, place.file));
  if (kept.length === 0) fail("config", `${JSON.stringify(exclude)} excludes every targeted module (${matched.map((t) => t.key).join(", ")})`, { file: place.file, field: place.excludeField });
  return kept;
}

/** The rank must fit every adapted layer: 1 ≤ r ≤ min(in, out). */
export function checkRank(r: number, targets: readonly Target[], place: { file?: string; field: string }): void {
  const narrowest = targets.reduce((a, t) => (Math.min(t.inFeatures, t.outFeatures) < Math.min(a.inFeatures, a.outFeatures) ? t : a));
  const width = Math.min(narrowest.inFeatures, narrowest.outFeatures);
  if (!(Number.isInteger(r) && r >= 1 && r <= width)) {
    fail("config", `rank ${r} does not fit: it must be an integer from 1 to ${width}, the narrowest adapted layer's width (${narrowest.key}: ${narrowest.inFeatures} → ${narrowest.outFeatures})`, place);
  }
}
