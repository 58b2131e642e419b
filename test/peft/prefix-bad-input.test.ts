// Bad input to prefix tuning and Cartridges: each a SoftpromptError naming the field or flag and what
// is accepted — a prefix longer than the context window, more frozen tokens than the cartridge has, a
// config field whose value we do not support, a table of the wrong shape, a prefix for another model.
import { describe, expect, it } from "vitest";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/models/index.js";
import { tokenizeExamples } from "../../src/data/index.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { trainAdapter } from "../../src/train/trainer.js";
import { loadAdapter } from "../../src/peft/adapter.js";
import { cartridge } from "../../src/peft/cartridge/index.js";
import { loadSoftPrompt } from "../../src/workflows.js";
import { SoftpromptError } from "../../src/util/errors.js";
import { adapterDir, modelDir } from "../helpers/golden.js";

const TINY = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url)); // 64 positions

async function caught(run: () => unknown): Promise<SoftpromptError> {
  try {
    await run();
  } catch (err) {
    expect(err).toBeInstanceOf(SoftpromptError);
    return err as SoftpromptError;
  }
  throw new Error("expected a SoftpromptError");
}

/** Train the tiny model on two short examples with `settings`, into a fresh folder. */
async function trainTiny(settings: Record<string, unknown>) {
  const model = await loadModel(TINY);
  const { items } = tokenizeExamples([{ kind: "prompt", prompt: "1 2 = ", completion: "2 1" }, { kind: "prompt", prompt: "3 4 = ", completion: "4 3" }], model.tokenizer, { maxLength: 16 });
  const outputDir = mkdtempSync(join(tmpdir(), "softprompt-prefix-bad-"));
  try {
    return await trainAdapter({ lm: model.lm, tokenizer: model.tokenizer, baseModelName: TINY, train: items, valid: [], config: parseTrainConfig({ steps: 1, ...settings }), outputDir });
  } finally {
    rmSync(outputDir, { recursive: true, force: true });
  }
}

/** A copy of a golden adapter folder with its config changed by `edit`. */
function editedAdapter(name: string, edit: (config: Record<string, unknown>) => void): string {
  const dir = mkdtempSync(join(tmpdir(), "softprompt-prefix-config-"));
  cpSync(adapterDir("llama", name), dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
  edit(config);
  writeFileSync(join(dir, "adapter_config.json"), JSON.stringify(config));
  return dir;
}

describe("a prefix longer than the context window", () => {
  it.each(["prefix", "cartridge"])("--method %s --num-virtual-tokens 64 on a 64-position model: names the flag and the accepted range", async (method) => {
    const error = await caught(() => trainTiny({ method, numVirtualTokens: 64 }));
    expect(error.place.field).toBe("--num-virtual-tokens");
    expect(error.message).toMatch(/must be ≥ 1 and ≤ 63/);
  });

  it("a prefix that fits alone but not with the longest example: names both settings", async () => {
    const error = await caught(() => trainTiny({ method: "prefix", numVirtualTokens: 60 }));
    expect(error.place.field).toBe("--num-virtual-tokens");
    expect(error.message).toMatch(/60 virtual tokens \+ the longest example's \d+ tokens/);
  });
});

describe("Cartridges' frozen tokens", () => {
  it("--num-frozen-tokens above --num-virtual-tokens is refused, naming it and the range", async () => {
    const error = await caught(() => parseTrainConfig({ method: "cartridge", numVirtualTokens: 4, numFrozenTokens: 5 }));
    expect(error.place.field).toBe("numFrozenTokens");
    expect(error.message).toMatch(/must be ≥ 0 and < numVirtualTokens \(4\): 5 is more than the cartridge has/);
    expect((await caught(() => parseTrainConfig({ method: "cartridge", numVirtualTokens: 4, numFrozenTokens: 4 }))).message).toMatch(/would leave nothing to train/);
  });

  it("an adapter_config.json with num_frozen_tokens > num_virtual_tokens is refused, naming the field", async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-cartridge-"));
    try {
      cpSync(fileURLToPath(new URL("../fixtures/reference/cartridge_peft/llama", import.meta.url)), dir, { recursive: true });
      const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
      writeFileSync(join(dir, "adapter_config.json"), JSON.stringify({ ...config, num_frozen_tokens: 5 }));
      const error = await caught(() => loadAdapter(dir));
      expect(error.place.field).toBe("num_frozen_tokens");
      expect(error.message).toMatch(/must be ≤ num_virtual_tokens \(4\), got 5/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an init text shorter than the cartridge names --init-text", async () => {
    const model = await loadModel(TINY);
    const options = cartridge.options.parse({ numVirtualTokens: 10, initText: "1 2" });
    const error = await caught(() => cartridge.initParams(options, { lm: model.lm, tokenizer: model.tokenizer, baseModelName: TINY, seed: 0 }));
    expect(error.place.field).toBe("--init-text");
    expect(error.message).toMatch(/gives \d+ tokens, but a cartridge of --num-virtual-tokens 10/);
  });
});

describe("config fields we do not support", () => {
  it.each([
    ["num_transformer_submodules", 2, /expected 1/],
    ["task_type", "SEQ_2_SEQ_LM", /expected "CAUSAL_LM"/],
    ["init_weights", "ones", /expected "zero"/],
  ] as const)("%s: %s is refused, naming the field and what is accepted", async (field, value, accepted) => {
    const dir = editedAdapter("prefix_tuning", (c) => (c[field] = value));
    try {
      const error = await caught(() => loadAdapter(dir));
      expect(error.code).toBe("adapter");
      expect(error.place.field).toBe(field);
      expect(error.message).toMatch(accepted);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a table whose shape does not match the config names the tensor and the shape expected", async () => {
    const dir = editedAdapter("prefix_tuning", (c) => (c.num_virtual_tokens = 5));
    try {
      const error = await caught(() => loadAdapter(dir));
      expect(error.place.tensor).toBe("prompt_embeddings");
      expect(error.message).toMatch(/\[4, 128\] does not match the config's \[num_virtual_tokens, num_layers·2·token_dim\] = \[5, 128\]/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a prefix made for another model: token_dim (the key/value width) is checked", async () => {
    const model = await loadModel(modelDir("gpt2")); // 4 KV heads of 16: width 64; llama's prefix is 2 × 16
    const error = await caught(() => loadSoftPrompt(adapterDir("llama", "prefix_tuning"), model, modelDir("gpt2")));
    expect(error.place.field).toBe("token_dim");
    expect(error.message).toMatch(/token_dim 32 does not match the model's hidden size 64/);
  });
});
