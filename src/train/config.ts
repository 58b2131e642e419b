/**
 * Training settings with their defaults, validated with zod: the trainer's own, and the chosen method's
 * (see each method's `options` schema; prompt tuning's defaults follow Lester et al. 2021 where they
 * apply, PEFT's examples otherwise). One flat object in, split by the method's keys.
 */
import { z } from "zod";
import { parseWith } from "../formats/json.js";
import { methodByName } from "../peft/index.js";
import { DECAYS } from "./schedule.js";

export const DEFAULT_METHOD = "prompt";

export const trainerSettingsSchema = z
  .object({
    optimizer: z.enum(["adamw", "adafactor"]).default("adamw"),
    /** Peak learning rate; prompts take large ones (Lester et al.: 0.3 with Adafactor). */
    lr: z.number().positive().default(3e-2),
    weightDecay: z.number().nonnegative().default(0),
    warmupSteps: z.number().int().nonnegative().default(0),
    decay: z.enum(DECAYS).default("linear"),
    /** Optimiser steps; by default enough for `epochs` passes over the training set. */
    steps: z.number().int().positive().optional(),
    epochs: z.number().positive().default(3),
    batchSize: z.number().int().positive().default(8),
    /** Batches whose gradients are summed (token-weighted) into one step. */
    gradAccum: z.number().int().positive().default(1),
    /** Clip the gradient's global norm to this (0: no clipping). */
    maxGradNorm: z.number().nonnegative().default(1),
    /** Longest example in tokens, before the virtual tokens; longer prompts are cut from the left. */
    maxLength: z.number().int().positive().default(256),
    /** Held-out share of the data when no validation file is given. */
    validFraction: z.number().min(0).max(0.9).default(0.1),
    /** Evaluate on the validation set every this many steps (and at the end). */
    evalEvery: z.number().int().positive().default(50),
    /** Stop after this many evaluations without a better validation loss (0: never). */
    patience: z.number().int().nonnegative().default(0),
    /** Write a resumable checkpoint every this many steps. */
    saveEvery: z.number().int().positive().default(100),
    seed: z.number().int().default(0),
  })
  .strict();

export type TrainerSettings = z.infer<typeof trainerSettingsSchema>;

export interface TrainConfig extends TrainerSettings {
  /** A registered method's name. */
  method: string;
  /** The method's own settings, validated by its `options` schema. */
  methodOptions: Record<string, unknown>;
}

export function parseTrainConfig(input: Record<string, unknown>, source = "training options"): TrainConfig {
  const { method: name = DEFAULT_METHOD, ...rest } = input;
  const method = methodByName(String(name));
  const methodKeys = new Set(Object.keys(method.options.shape));
  const ownPart = Object.fromEntries(Object.entries(rest).filter(([k]) => !methodKeys.has(k)));
  const methodPart = Object.fromEntries(Object.entries(rest).filter(([k]) => methodKeys.has(k)));
  const settings = parseWith(trainerSettingsSchema, { ...method.trainerDefaults, ...ownPart }, "config", { file: source });
  const methodOptions = parseWith(method.options, methodPart, "config", { file: source }) as Record<string, unknown>;
  return { ...settings, method: method.name, methodOptions };
}
