// Adding a method is one folder and one registration line: a test-only method — a soft prompt times a
// learned scale — registered from this test, trains, saves, loads, evaluates and generates through the
// same code as prompt tuning, without touching any source file.
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import * as o from "../../src/graph/ops.js";
import { registerMethod, registeredMethods, type PeftMethod } from "../../src/peft/index.js";
import { loadAdapter } from "../../src/peft/adapter.js";
import { evaluate, generateText, train } from "../../src/workflows.js";
import { SoftpromptError } from "../../src/util/errors.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const DATA = fileURLToPath(new URL("../../examples/data/reverse.train.jsonl", import.meta.url));
const VALID = fileURLToPath(new URL("../../examples/data/reverse.valid.jsonl", import.meta.url));

const toyConfig = z.looseObject({
  peft_type: z.literal("TOY_SCALED_PROMPT"),
  num_virtual_tokens: z.number().int().positive(),
  token_dim: z.number().int().positive(),
  base_model_name_or_path: z.string().nullish(),
});
type ToyConfig = z.infer<typeof toyConfig>;
const toyOptions = z.object({ numVirtualTokens: z.number().int().positive().default(4), initScale: z.number().default(1) });
type ToyOptions = z.infer<typeof toyOptions>;

/** n vectors times one learned scalar, before the text. */
const scaledPrompt: PeftMethod<ToyOptions, ToyConfig> = {
  name: "toy-scaled-prompt",
  peftType: "TOY_SCALED_PROMPT",
  options: toyOptions,
  config: toyConfig,
  makeConfig: (options, { lm, baseModelName }) => ({
    peft_type: "TOY_SCALED_PROMPT",
    num_virtual_tokens: options.numVirtualTokens,
    token_dim: lm.config.hiddenSize,
    base_model_name_or_path: baseModelName,
  }),
  initParams(options, { lm }) {
    const d = lm.config.hiddenSize;
    const table = lm.weights.tensor(lm.embeddingName).data;
    // The first n vocabulary vectors, so the start is a plausible prompt.
    return new Map([
      ["toy_prompt", { shape: [options.numVirtualTokens, d], data: table.slice(0, options.numVirtualTokens * d) }],
      ["toy_scale", { shape: [1], data: Float32Array.of(options.initScale) }],
    ]);
  },
  adapt(config, params) {
    const n = config.num_virtual_tokens;
    const scaled = o.mul(params.get("toy_prompt")!, params.get("toy_scale")!); // [n, d]
    const index = o.input("toy_index", "int64", ["batch", n]);
    return {
      virtualEmbeds: o.gather(scaled, index, 0),
      feeds: ({ batchSize }) => ({ toy_index: { data: new BigInt64Array(batchSize * n).map((_, i) => BigInt(i % n)), dims: [batchSize, n] } }),
    };
  },
  toPeftTensors: (_config, params) => params,
  async fromPeftTensors(_config, read) {
    return new Map([
      ["toy_prompt", await read("toy_prompt")],
      ["toy_scale", await read("toy_scale")],
    ]);
  },
  inferenceForm(_config, params) {
    const scale = params.get("toy_scale")!.data[0];
    return { kind: "embeddings", embeddings: params.get("toy_prompt")!.data.map((x) => x * scale) };
  },
};

describe("a method registered from outside src/", () => {
  registerMethod(scaledPrompt);

  it("is listed, and a second registration under the same name or peft_type is refused", () => {
    expect(registeredMethods()).toContain("toy-scaled-prompt");
    expect(() => registerMethod(scaledPrompt)).toThrow(/a method named "toy-scaled-prompt" is already registered/);
    expect(() => registerMethod({ ...scaledPrompt, name: "other" })).toThrow(/peft_type "TOY_SCALED_PROMPT" is already registered by method "toy-scaled-prompt"/);
  });

  it("trains (both tensors move), saves in PEFT's layout, loads, evaluates and generates", async () => {
    const output = mkdtempSync(join(tmpdir(), "softprompt-toy-method-"));
    const losses: number[] = [];
    const result = await train({
      model: MODEL, data: DATA, valid: VALID, output, method: "toy-scaled-prompt", numVirtualTokens: 6,
      steps: 40, lr: 0.1, evalEvery: 20, onStep: (e) => losses.push(e.loss),
    });
    expect(result.steps).toBe(40);
    expect(losses.at(-1)!).toBeLessThan(losses[0] * 0.7);
    expect(result.params.get("toy_scale")!.data[0]).not.toBe(1);

    const config = JSON.parse(readFileSync(join(output, "adapter_config.json"), "utf8"));
    expect(config).toMatchObject({ peft_type: "TOY_SCALED_PROMPT", num_virtual_tokens: 6, base_model_name_or_path: MODEL });
    const saved = await loadAdapter(output);
    expect(saved.method.name).toBe("toy-scaled-prompt");
    expect([...saved.params.keys()].sort()).toEqual(["toy_prompt", "toy_scale"]);

    // The saved adapter is the best validation step: its loss is the best one the run reported.
    const report = await evaluate({ model: MODEL, data: VALID, adapter: output });
    expect(report.loss).toBeCloseTo(result.bestValidLoss!, 5);
    expect(report.loss).toBeLessThan(report.baselines.none!.loss);
    const [generation] = await generateText({ model: MODEL, adapter: output, inputs: ["3 1 4 = "], maxNewTokens: 4 });
    expect(generation.ids.length).toBeGreaterThan(0);
    rmSync(output, { recursive: true });
  });

  it("its unknown options are refused naming the field", async () => {
    await expect(train({ model: MODEL, data: DATA, output: "unused", method: "toy-scaled-prompt", init: "vocab" })).rejects.toThrow(SoftpromptError);
    await expect(train({ model: MODEL, data: DATA, output: "unused", method: "no-such-method" })).rejects.toThrow(/unknown method "no-such-method"; registered: .*prompt/);
  });
});
