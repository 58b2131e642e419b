/**
 * PEFT's PromptEncoderConfig (P_TUNING) as adapter_config.json holds it, and the training options of
 * P-tuning. Fields PEFT writes that we do not use are kept as they are, so a file round-trips unchanged.
 */
import { z } from "zod";

export const ENCODER_TYPES = ["mlp", "lstm"] as const;
export type EncoderType = (typeof ENCODER_TYPES)[number];
/** PEFT's spelling of each encoder type. */
export const PEFT_ENCODER_TYPE = { mlp: "MLP", lstm: "LSTM" } as const;

export const pTuningConfigSchema = z.looseObject({
  peft_type: z.literal("P_TUNING"),
  task_type: z.literal("CAUSAL_LM"),
  num_virtual_tokens: z.number().int().positive(),
  token_dim: z.number().int().positive(),
  num_transformer_submodules: z.number().int().positive().default(1),
  num_attention_heads: z.number().int().positive().nullish(),
  num_layers: z.number().int().positive().nullish(),
  encoder_reparameterization_type: z
    .enum(["MLP", "LSTM"], { error: (iss) => `expected "MLP" or "LSTM", got ${JSON.stringify(iss.input)}` })
    .default("MLP"),
  encoder_hidden_size: z.number().int().positive(),
  encoder_num_layers: z.number().int().positive().default(2),
  encoder_dropout: z.number().min(0).max(1).default(0),
  base_model_name_or_path: z.string().nullish(),
  inference_mode: z.boolean().default(true),
});
export type PTuningConfig = z.infer<typeof pTuningConfigSchema>;

/** PEFT's MLP encoder always has two hidden layers; encoder_num_layers counts LSTM layers. */
export const MLP_LAYERS = 2;

/** Training options of P-tuning (Liu et al. 2021), named after PEFT's config keys. */
export const pTuningOptionsSchema = z
  .object({
    numVirtualTokens: z.number().int().positive().default(20).describe("virtual tokens in the prompt"),
    encoderReparameterizationType: z
      .enum(ENCODER_TYPES)
      .default("mlp")
      .describe("the prompt encoder: mlp (3 linear layers) or lstm (a bidirectional LSTM, then 2 linear layers)"),
    encoderHiddenSize: z.number().int().positive().optional().describe("the prompt encoder's hidden size (default: the model's hidden size)"),
    encoderNumLayers: z.number().int().positive().default(MLP_LAYERS).describe("LSTM layers of the lstm encoder (the mlp encoder has 2 hidden layers)"),
    encoderDropout: z.number().min(0).lt(1).default(0).describe("dropout between LSTM layers while training; only 0 is supported"),
    initFrom: z.string().optional().describe("a P-tuning run (its checkpoint's encoder) or an adapter (its prompt as the encoder's input) to start from"),
  })
  .superRefine((o, ctx) => {
    if (o.encoderReparameterizationType === "mlp" && o.encoderNumLayers !== MLP_LAYERS) {
      ctx.addIssue({ code: "custom", message: `the mlp encoder has ${MLP_LAYERS} hidden layers (as PEFT's); encoderNumLayers counts the layers of the lstm encoder`, path: ["encoderNumLayers"] });
    }
    // Dropout would need a training/evaluation switch that the adaptation does not have.
    if (o.encoderDropout !== 0) ctx.addIssue({ code: "custom", message: `dropout in the prompt encoder is not supported; expected 0, got ${o.encoderDropout}`, path: ["encoderDropout"] });
  });
export type PTuningOptions = z.infer<typeof pTuningOptionsSchema>;
