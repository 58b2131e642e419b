// The families of issue #12 against the real transformers 5.18 + PEFT 0.21 on tiny seeded models
// (test/fixtures/reference/make_families.py): logits and hidden states with left padding, PEFT prompt
// tuning's loss, logits and prompt gradient, greedy generation over 24 new tokens (past every sliding
// window), PEFT's saved adapter, `softprompt info`, and every projection seen by the forward hook.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as o from "../../src/graph/ops.js";
import { grad } from "../../src/graph/autodiff.js";
import type { CausalLM } from "../../src/models/causal-lm.js";
import { readModelConfig } from "../../src/models/config.js";
import { loadWeights } from "../../src/models/checkpoint.js";
import { buildModel } from "../../src/models/build.js";
import { modelInfo } from "../../src/models/info.js";
import { arangePositions, attentionPattern, idsTensor, positionsFromMask } from "../../src/models/inputs.js";
import { promptLossFeeds, promptLossGraph } from "../../src/peft/prompt-tuning/model.js";
import { loadPromptAdapter } from "../../src/peft/prompt-tuning/index.js";
import { generate } from "../../src/infer/generate.js";
import { loadTokenizer } from "../../src/tokenizer/index.js";
import { Program } from "../../src/runtime/session.js";
import { maxAbsDiff, readTensors, rows } from "../helpers/golden.js";

const FAMILIES_DIR = fileURLToPath(new URL("../fixtures/families/", import.meta.url));

/** Each fixture (named by its model_type unless said), its transformers class and the projections of layer i, by module name. */
const FAMILIES = [
  { family: "qwen3", cls: "Qwen3ForCausalLM", projections: llamaProjections },
  { family: "gemma3_text", cls: "Gemma3ForCausalLM", projections: llamaProjections },
  { family: "gpt_neox", cls: "GPTNeoXForCausalLM", projections: (i: number) => ["attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h"].map((m) => `gpt_neox.layers.${i}.${m}`) },
  { family: "olmo2", cls: "Olmo2ForCausalLM", projections: llamaProjections },
  { family: "phi3", cls: "Phi3ForCausalLM", projections: phi3Projections },
  // Phi3ForCausalLM.generate drops the KV cache and recomputes it once the input reaches
  // original_max_position_embeddings + 1 (10 + 1 here) tokens, so that every key takes the long factors; we
  // keep the cache (each forward picks its factors, as transformers' rotary does). Without a prompt the
  // base rows are compared up to that point; with PEFT's prompt (cache longer than 10) transformers keeps it too.
  { family: "phi3_longrope", modelType: "phi3", cls: "Phi3ForCausalLM", projections: phi3Projections, recomputedAt: 11 },
  { family: "smollm3", cls: "SmolLM3ForCausalLM", projections: llamaProjections },
  { family: "gemma2", cls: "Gemma2ForCausalLM", projections: llamaProjections },
  { family: "mistral", cls: "MistralForCausalLM", projections: llamaProjections },
] as { family: string; modelType?: string; cls: string; projections: (i: number) => string[]; recomputedAt?: number }[];

function phi3Projections(i: number): string[] {
  return ["self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"].map((m) => `model.layers.${i}.${m}`);
}

function llamaProjections(i: number): string[] {
  return ["q_proj", "k_proj", "v_proj", "o_proj"].map((m) => `model.layers.${i}.self_attn.${m}`).concat(["gate_proj", "up_proj", "down_proj"].map((m) => `model.layers.${i}.mlp.${m}`));
}

const modelDir = (family: string) => join(FAMILIES_DIR, family, "model");
const readCase = (family: string, name: string) => readTensors(join(FAMILIES_DIR, family, "cases", `${name}.safetensors`));
const models = new Map<string, Promise<CausalLM>>();
function loadFamily(family: string): Promise<CausalLM> {
  let lm = models.get(family);
  if (lm === undefined) {
    lm = readModelConfig(modelDir(family)).then(async (config) => buildModel(config, await loadWeights(modelDir(family), config)));
    models.set(family, lm);
  }
  return lm;
}

/** Our loss, logits and prompt gradient for the prompt_tuning case's batch with the given prompt table. */
async function promptLoss(lm: CausalLM, golden: Awaited<ReturnType<typeof readCase>>, prompt: Float32Array) {
  const n = golden.get("prompt_embeddings")!.shape[0];
  const [B, T] = golden.get("input_ids")!.shape;
  const graph = promptLossGraph(lm, n);
  const [gPrompt] = grad(graph.loss, [graph.prompt!]);
  const logits = lm.lmHead(o.reshape(graph.hidden, [-1, lm.config.hiddenSize]));
  const program = await Program.compile({ loss: graph.loss, grad: gPrompt, logits });
  const batch = {
    inputIds: golden.get("input_ids")!.data,
    attentionMask: golden.get("attention_mask")!.data,
    labels: golden.get("labels")!.data,
    batchSize: B,
    seqLen: T,
  };
  const out = await program.run({ ...lm.weights.feeds(), ...promptLossFeeds(batch, n), prompt: { data: prompt, dims: [n, lm.config.hiddenSize] } });
  return { loss: (out.loss.data as Float32Array)[0], logits: out.logits.data as Float32Array, grad: out.grad.data as Float32Array };
}

describe.each(FAMILIES)("$family against transformers 5.18", ({ family, modelType, cls, projections, recomputedAt }) => {
  it("logits and hidden states at valid positions within 1e-4, left-padded, with arange and mask-derived positions", async () => {
    const lm = await loadFamily(family);
    const golden = await readCase(family, "forward");
    const ids = rows(golden.get("input_ids")!);
    const mask = rows(golden.get("attention_mask")!);
    const [B, T] = [ids.length, ids[0].length];
    const positions = o.input("position_ids", "int64", ["batch", "seq"]);
    const allowed = o.input("allowed", "bool", ["batch", 1, "seq", "seq"]);
    const { hidden, hiddenStates } = lm.forward({ inputsEmbeds: lm.embed(o.input("input_ids", "int64", ["batch", "seq"])), positions, allowed });
    const logits = lm.lmHead(o.reshape(hidden, [-1, lm.config.hiddenSize]));
    const program = await Program.compile(Object.fromEntries([["logits", logits], ...hiddenStates.map((h, i) => [`hidden_states.${i}`, h] as const)]));
    const run = (pos: { data: BigInt64Array; dims: number[] }) =>
      program.run({ ...lm.weights.feeds(), input_ids: idsTensor(ids), position_ids: pos, allowed: attentionPattern(mask, T) });
    const valid = (r: number, t: number) => mask[r][t] === 1;
    const V = lm.config.vocabSize;

    const out = await run(arangePositions(B, T));
    expect(maxAbsDiff(out.logits.data as Float32Array, golden.get("logits")!.data as Float32Array, [B, T, V], valid)).toBeLessThan(1e-4);
    expect(hiddenStates).toHaveLength(lm.config.numLayers + 1);
    for (let i = 0; i < hiddenStates.length; i++) {
      const want = golden.get(`hidden_states.${i}`)!;
      expect(maxAbsDiff(out[`hidden_states.${i}`].data as Float32Array, want.data as Float32Array, want.shape, valid)).toBeLessThan(1e-4);
    }
    const fromMask = await run(positionsFromMask(mask));
    const want = golden.get("logits_with_position_ids_from_mask")!.data as Float32Array;
    expect(maxAbsDiff(fromMask.logits.data as Float32Array, want, [B, T, V], valid)).toBeLessThan(1e-4);
  });

  it("PEFT prompt tuning: loss, logits and prompt gradient within the golden tolerances", async () => {
    const lm = await loadFamily(family);
    const golden = await readCase(family, "prompt_tuning");
    const out = await promptLoss(lm, golden, golden.get("prompt_embeddings")!.data as Float32Array);
    expect(Math.abs(out.loss - (golden.get("loss")!.data as Float32Array)[0])).toBeLessThan(1e-5);
    const n = golden.get("prompt_embeddings")!.shape[0];
    const T = golden.get("input_ids")!.shape[1];
    const mask = golden.get("attention_mask")!.data as number[];
    const wantLogits = golden.get("logits")!;
    const valid = (r: number, p: number) => p < n || mask[r * T + (p - n)] === 1;
    expect(maxAbsDiff(out.logits, wantLogits.data as Float32Array, wantLogits.shape, valid)).toBeLessThan(1e-4);
    const wantGrad = golden.get("grad.prompt_embeddings")!.data as Float32Array;
    expect(Math.max(...wantGrad.map(Math.abs))).toBeGreaterThan(1e-3);
    wantGrad.forEach((g, i) => expect(Math.abs(out.grad[i] - g)).toBeLessThanOrEqual(1e-5 + 1e-3 * Math.abs(g)));
  });

  it("the adapter PEFT saved loads and gives PEFT's loss", async () => {
    const lm = await loadFamily(family);
    const adapter = await loadPromptAdapter(join(FAMILIES_DIR, family, "adapters", "prompt_tuning"));
    expect(adapter.config).toMatchObject({ num_virtual_tokens: 5, token_dim: lm.config.hiddenSize, num_layers: lm.config.numLayers });
    const golden = await readCase(family, "prompt_tuning");
    const out = await promptLoss(lm, golden, adapter.embeddings);
    expect(Math.abs(out.loss - (golden.get("loss")!.data as Float32Array)[0])).toBeLessThan(1e-5);
  });

  it("greedy generation with a KV cache is token-identical over 24 new tokens: with PEFT's prompt, without, and a left-padded batch", async () => {
    const lm = await loadFamily(family);
    const tokenizer = await loadTokenizer(modelDir(family));
    const golden = await readCase(family, "generate");
    const table = golden.get("prompt_embeddings")!;
    const prompt = { id: `golden-${family}`, embeddings: table.data as Float32Array, dims: table.shape };
    const input = rows(golden.get("input_ids")!)[0];
    const maxNewTokens = 24;
    const newTokens = (out: number[]) => out.slice(input.length);

    const [withPrompt] = await generate(lm, tokenizer, [{ inputIds: input, prompt, maxNewTokens }]);
    expect(withPrompt.ids).toEqual(newTokens(rows(golden.get("output_ids")!)[0]));
    // Tokens comparable without a prompt: all, or those made before transformers recomputes its cache.
    const upTo = (ids: number[], width: number) => ids.slice(0, recomputedAt === undefined ? undefined : recomputedAt - width);
    const [base] = await generate(lm, tokenizer, [{ inputIds: input, maxNewTokens }]);
    expect(upTo(base.ids, input.length)).toEqual(upTo(newTokens(rows(golden.get("base_model.output_ids")!)[0]), input.length));

    const padded = rows(golden.get("batch2.input_ids")!);
    const mask = rows(golden.get("batch2.attention_mask")!);
    const batch = await generate(lm, tokenizer, padded.map((r, b) => ({ inputIds: r.filter((_, t) => mask[b][t] === 1), maxNewTokens })));
    const want = rows(golden.get("batch2.base_model.output_ids")!);
    batch.forEach((g, b) => expect(upTo(g.ids, padded[b].length)).toEqual(upTo(want[b].slice(padded[b].length), padded[b].length)));
  });

  it("`softprompt info` reports transformers' parameter count and class", async () => {
    const index = JSON.parse(readFileSync(join(FAMILIES_DIR, family, "index.json"), "utf8"));
    const info = await modelInfo(modelDir(family));
    expect(info).toMatchObject({ architecture: cls, modelType: modelType ?? family, parameters: index.num_parameters, dtype: "F32" });
  });

  it("the forward hook sees every projection once, by the name of its weight", async () => {
    const lm = await loadFamily(family);
    const seen: string[] = [];
    lm.forward({
      inputsEmbeds: o.input("embeds", "float32", [1, 3, lm.config.hiddenSize]),
      positions: o.input("positions", "int64", [1, 3]),
      allowed: o.input("allowed", "bool", [1, 1, 3, 3]),
      hooks: { linear: (module, _x, y) => (seen.push(module), y) },
    });
    expect(seen).toEqual(Array.from({ length: lm.config.numLayers }, (_, i) => projections(i)).flat());
    for (const module of seen) expect(lm.weights.has(`${module}.weight`)).toBe(true);
  });
});
