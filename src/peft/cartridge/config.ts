/**
 * PEFT's CartridgeConfig (peft/tuners/cartridge/config.py) as adapter_config.json holds it, and our
 * training options. A cartridge is a prefix of keys/values stored directly as parameters (Eyuboglu et
 * al. 2025, "Cartridges"), its first `num_frozen_tokens` kept as they started: an attention sink.
 */
import { z } from "zod";
import { prefixConfigFields } from "../prefix-tuning/config.js";

export const cartridgeConfigSchema = z
  .looseObject({
    peft_type: z.literal("CARTRIDGE"),
    ...prefixConfigFields,
    num_frozen_tokens: z.number().int().nonnegative().default(1),
  })
  .superRefine((c, ctx) => {
    if (c.num_frozen_tokens > c.num_virtual_tokens) {
      ctx.addIssue({ code: "custom", message: `must be ≤ num_virtual_tokens (${c.num_virtual_tokens}), got ${c.num_frozen_tokens}`, path: ["num_frozen_tokens"] });
    }
  });
export type CartridgeConfig = z.infer<typeof cartridgeConfigSchema>;

export const cartridgeOptionsSchema = z
  .object({
    numVirtualTokens: z.number().int().positive().default(20).describe("cartridge length: keys/values per layer before the text"),
    numFrozenTokens: z.number().int().nonnegative().default(1).describe("first cartridge tokens kept frozen as an attention sink (never updated)"),
    initText: z
      .string()
      .optional()
      .describe("text whose prefill keys/values start the cartridge (its first num-virtual-tokens tokens); without it, N(0, 1) as PEFT"),
  })
  .superRefine((o, ctx) => {
    if (o.numFrozenTokens >= o.numVirtualTokens) {
      const what = o.numFrozenTokens === o.numVirtualTokens ? "would leave nothing to train" : "is more than the cartridge has";
      ctx.addIssue({ code: "custom", message: `must be ≥ 0 and < numVirtualTokens (${o.numVirtualTokens}): ${o.numFrozenTokens} ${what}`, path: ["numFrozenTokens"] });
    }
  });
export type CartridgeOptions = z.infer<typeof cartridgeOptionsSchema>;
