/**
 * Training settings with their defaults, validated with zod. Defaults follow Lester et al. 2021
 * where they apply (20 virtual tokens, vocabulary init) and PEFT's prompt-tuning examples otherwise.
 */
import { z } from "zod";
import { fail } from "../util/errors.js";
import { parseWith } from "../formats/json.js";
import { PROMPT_INITS } from "../peft/prompt-tuning/config.js";
import { DECAYS } from "./schedule.js";

export const trainConfigSchema = z
  .object({
    /** Virtual tokens in the prompt. */
    numVirtualTokens: z.number().int().positive().default(20),
    init: z.enum(PROMPT_INITS).default("vocab"),
    /** The hard prompt whose embeddings start the soft prompt (init "text"). */
    initText: z.string().optional(),
    /** Class label words whose embeddings come first (init "labels"). */
    labels: z.array(z.string()).optional(),
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

export type TrainConfig = z.infer<typeof trainConfigSchema>;

export function parseTrainConfig(input: unknown, source = "training options"): TrainConfig {
  const config = parseWith(trainConfigSchema, input, "config", { file: source });
  if (config.init === "text" && !config.initText) fail("config", 'init "text" needs initText', { file: source, field: "initText" });
  if (config.init === "labels" && !(config.labels && config.labels.length > 0)) {
    fail("config", 'init "labels" needs labels', { file: source, field: "labels" });
  }
  return config;
}
