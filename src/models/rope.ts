/**
 * Rotary position embeddings (Su et al. 2021) as configs describe them, for every rotary family:
 * the base θ and optional frequency scaling, read from either config format, and the inverse
 * frequencies the graph turns into cos/sin tables (nn.rotaryTables).
 */
import { z } from "zod";
import { fail } from "../util/errors.js";
import type * as nn from "../graph/nn.js";
import { count, eps } from "./config-fields.js";

export const ROPE_TYPES = ["default", "linear", "llama3"] as const;

export type RopeConfig =
  | { type: "default"; theta: number }
  /** Position interpolation (Chen et al. 2023): every frequency divided by `factor` (Gemma 3's global layers). */
  | { type: "linear"; theta: number; factor: number }
  | {
      /**
       * LongRoPE (Ding et al. 2024; Phi-3's "su"): each frequency divided by its own factor, the short ones
       * while the forward's largest position is within originalMaxPositions, the long ones beyond; cos and
       * sin scaled by attentionFactor.
       */
      type: "longrope";
      theta: number;
      shortFactor: number[];
      longFactor: number[];
      originalMaxPositions: number;
      attentionFactor: number;
    }
  | {
      /** Llama 3.1 frequency scaling: long wavelengths divided by `factor`, short kept, a smooth blend between. */
      type: "llama3";
      theta: number;
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositions: number;
    };

/** rope_parameters (5.x) and rope_scaling (4.x) share these keys; 4.x spells rope_type as type. */
export const ropeBlock = z.looseObject({
  rope_type: z.string().optional(),
  type: z.string().optional(),
  rope_theta: eps.optional(),
  factor: eps.optional(),
  low_freq_factor: eps.optional(),
  high_freq_factor: eps.optional(),
  original_max_position_embeddings: count.optional(),
  partial_rotary_factor: z.number().positive().max(1).optional(),
  short_factor: z.array(eps).optional(),
  long_factor: z.array(eps).optional(),
  attention_factor: eps.optional(),
});
export type RopeBlock = z.infer<typeof ropeBlock>;

/** The config.json fields that describe rotary positions, in both formats: spread into a family's schema. */
export const ropeFields = {
  rope_theta: eps.optional(),
  rope_scaling: ropeBlock.nullish(),
  rope_parameters: ropeBlock.nullish(),
};

type RopeRaw = z.infer<z.ZodObject<typeof ropeFields>>;

/** The rotary settings of a config; `defaultTheta` is the family's when the config names none. */
export function parseRope(c: RopeRaw, file: string, defaultTheta = 10000, limits?: RopeLimits): RopeConfig {
  // 5.x keeps everything in rope_parameters; 4.x has rope_theta at the top and scaling in rope_scaling.
  const fieldName = c.rope_parameters != null ? "rope_parameters" : "rope_scaling";
  const params = c.rope_parameters ?? c.rope_scaling ?? {};
  return ropeFromBlock(params, c.rope_parameters?.rope_theta ?? c.rope_theta ?? defaultTheta, fieldName, file, limits);
}

/**
 * LongRoPE as transformers' _compute_longrope_parameters: factor defaults to max / original context,
 * attention_factor to √(1 + ln factor / ln original) (1 when factor ≤ 1).
 */
function longRope(params: RopeBlock, theta: number, fieldName: string, file: string, limits: RopeLimits): RopeConfig {
  const originalMaxPositions = limits.originalMaxPositions ?? params.original_max_position_embeddings ?? limits.maxPositions;
  const factors = (key: "short_factor" | "long_factor") =>
    params[key] ?? fail("config", "missing required field for longrope rope", { file, field: `${fieldName}.${key}` });
  const factor = params.factor ?? limits.maxPositions / originalMaxPositions;
  const attentionFactor = params.attention_factor ?? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(originalMaxPositions)));
  return { type: "longrope", theta, shortFactor: factors("short_factor"), longFactor: factors("long_factor"), originalMaxPositions, attentionFactor };
}

/** The context lengths LongRoPE reads from outside its block (Phi-3 keeps the original one at the top level). */
export interface RopeLimits {
  maxPositions: number;
  originalMaxPositions?: number | null;
}

/** One block of rope settings (a config's, or one layer type's in Gemma 3) with its base θ. */
export function ropeFromBlock(params: RopeBlock, theta: number, fieldName: string, file: string, limits?: RopeLimits): RopeConfig {
  const type = params.rope_type ?? params.type ?? "default";
  if (type === "default") return { type, theta };
  if (type === "longrope" && limits !== undefined) return longRope(params, theta, fieldName, file, limits);
  const need = <K extends "factor" | "low_freq_factor" | "high_freq_factor" | "original_max_position_embeddings">(
    key: K,
  ): number =>
    params[key] ?? fail("config", `missing required field for ${type} rope`, { file, field: `${fieldName}.${key}` });
  if (type === "linear") return { type, theta, factor: need("factor") };
  if (type !== "llama3") {
    const supported = limits === undefined ? ROPE_TYPES : [...ROPE_TYPES, "longrope"]; // longrope: where the family reads it
    fail("config", `rope type ${JSON.stringify(type)} is not supported; supported: ${supported.join(", ")}`, {
      file,
      field: `${fieldName}.rope_type`,
    });
  }
  return {
    type,
    theta,
    factor: need("factor"),
    lowFreqFactor: need("low_freq_factor"),
    highFreqFactor: need("high_freq_factor"),
    originalMaxPositions: need("original_max_position_embeddings"),
  };
}

/**
 * The fraction of each head that rotates (GPT-NeoX, Phi-3): rope_parameters.partial_rotary_factor in
 * 5.x (or rope_scaling's), else the family's 4.x field (`legacy`), else `fallback`.
 */
export function parsePartialRotary(c: RopeRaw, legacy: number | null | undefined, fallback = 1): number {
  return (c.rope_parameters ?? c.rope_scaling)?.partial_rotary_factor ?? legacy ?? fallback;
}

/**
 * inv_freq = 1 / θ^(2i/hd), computed in float32 as HF does; "linear" divides them all by `factor`; "llama3" scaling (Llama 3.1) divides long
 * wavelengths by `factor`, keeps short ones, and blends smoothly in between.
 */
export function rotaryInverseFrequencies(rope: RopeConfig, hd: number): Float32Array {
  const inv = new Float32Array(hd / 2);
  for (let i = 0; i < hd / 2; i++) inv[i] = 1 / Math.fround(Math.pow(rope.theta, Math.fround((2 * i) / hd)));
  if (rope.type === "linear") return inv.map((f) => f / rope.factor);
  if (rope.type === "longrope") return scaledBy(inv, rope.shortFactor);
  if (rope.type !== "llama3") return inv;
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = rope;
  const lowFreqWavelen = originalMaxPositions / lowFreqFactor;
  const highFreqWavelen = originalMaxPositions / highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / factor;
    const smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

/** inv_freq / ext_factors, as float32 (1 / (ext · θ^(2i/hd))). */
function scaledBy(inv: Float32Array, factors: number[]): Float32Array {
  if (factors.length !== inv.length) fail("config", `longrope needs ${inv.length} factors (half the rotary dims), got ${factors.length}`, { field: "rope_parameters" });
  return inv.map((f, i) => 1 / Math.fround(factors[i] / f));
}

/** What nn.rotaryTables needs beyond the (short) inverse frequencies: LongRoPE's long ones and its cos/sin scale. */
export function rotaryOptions(rope: RopeConfig, hd: number): nn.RotaryOptions {
  if (rope.type !== "longrope") return {};
  const base = rotaryInverseFrequencies({ type: "default", theta: rope.theta }, hd);
  return { scale: rope.attentionFactor, long: { invFreq: scaledBy(base, rope.longFactor), beyond: rope.originalMaxPositions } };
}
