// The offline demo's committed base model (examples/models/tiny-tasks, made by examples/pretrain.ts) and
// its soft-prompt datasets (examples/data, made by examples/make-datasets.ts): the frozen model knows
// each tagged skill, and the datasets are the untagged form of those skills.
import { beforeAll, describe, expect, it } from "vitest";
import { statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readModelConfig, type ModelConfig } from "../src/models/config.js";
import { loadWeights } from "../src/models/checkpoint.js";
import { buildModel } from "../src/models/build.js";
import type { CausalLM } from "../src/models/causal-lm.js";
import { loadTokenizer, type Tokenizer } from "../src/tokenizer/index.js";
import { readExamples, tokenizeExample } from "../src/data/index.js";
import { Rng } from "../src/util/rng.js";
import {
  EOS,
  TAGS,
  TASKS,
  VOCAB,
  exactMatch,
  isHeldOut,
  makeExample,
  sampleInputs,
  solve,
} from "../examples/tasks.js";

const MODEL = fileURLToPath(new URL("../examples/models/tiny-tasks/", import.meta.url));
const DATA = fileURLToPath(new URL("../examples/data/", import.meta.url));

let config: ModelConfig;
let lm: CausalLM;
let tokenizer: Tokenizer;

beforeAll(async () => {
  config = await readModelConfig(MODEL);
  lm = buildModel(config, await loadWeights(MODEL, config));
  tokenizer = await loadTokenizer(MODEL);
});

describe("examples/models/tiny-tasks", () => {
  it("is a tiny Llama with tied embeddings over the tokenizer's vocabulary", () => {
    expect(config.modelType).toBe("llama");
    expect(config.tieWordEmbeddings).toBe(true);
    expect(config.vocabSize).toBe(tokenizer.vocabSize);
    expect(config.vocabSize).toBe(VOCAB.length);
    expect(config.hiddenSize).toBeGreaterThanOrEqual(64);
    expect(config.hiddenSize).toBeLessThanOrEqual(96);
    expect(config.numLayers).toBeGreaterThanOrEqual(2);
    expect(config.numLayers).toBeLessThanOrEqual(4);
    expect(config.numHeads).toBe(4);
    expect(config.maxPositions).toBe(64);
    expect(config.rope).toEqual({ type: "default", theta: 10000 });
    expect(config.eosTokenIds).toEqual([tokenizer.eosTokenIds[0]]);
    expect(statSync(join(MODEL, "model.safetensors")).size).toBeLessThan(1_000_000);
  });

  it("has a word-level tokenizer: one token per word, <|endoftext|> as EOS and padding, exact round trips", () => {
    expect(tokenizer.eosTokenIds).toEqual([tokenizer.tokenToId(EOS)]);
    expect(tokenizer.padTokenId).toBe(tokenizer.tokenToId(EOS));
    expect(tokenizer.specialPrefixIds).toEqual([]);
    expect(tokenizer.specialSuffixIds).toEqual([]);
    VOCAB.forEach((word, id) => expect(tokenizer.tokenToId(word)).toBe(id));
    const ex = makeExample("reverse", [3, 1, 4], true);
    expect(ex).toEqual({ prompt: "reverse: 3 1 4 = ", completion: "4 1 3" });
    expect(tokenizer.tokenize(ex.prompt + ex.completion)).toEqual(["reverse:", "3", "1", "4", "=", "4", "1", "3"]);
    for (const text of ["copy: 0 9 = 0 9", "7 7 2 =", "increment: 1 2 3 = 2 3 4"]) {
      expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    }
    expect(tokenizer.decode([...tokenizer.encode("4 1 3"), tokenizer.eosTokenIds[0]], { skipSpecialTokens: true })).toBe("4 1 3");
    expect(tokenizer.encode("hello 3")).toEqual([tokenizer.tokenToId("<unk>"), tokenizer.tokenToId("3")]);
    // The data pipeline's encoding is the pretraining encoding: prompt, completion, EOS, in one piece.
    const { inputIds, labels } = tokenizeExample({ kind: "prompt", ...ex }, tokenizer, { maxLength: 64 });
    expect(inputIds).toEqual(tokenizer.encode(`${ex.prompt}${ex.completion} ${EOS}`));
    expect(labels.filter((l) => l !== -100)).toEqual([...tokenizer.encode(ex.completion), tokenizer.eosTokenIds[0]]);
  });

  const inputs = sampleInputs(new Rng(77), "heldout", 40);

  it.each(TASKS)("with the tag, the frozen model does %s on held-out inputs", async (task) => {
    const accuracy = await exactMatch(lm, tokenizer, inputs.map((xs) => makeExample(task, xs, true)));
    expect(accuracy).toBeGreaterThanOrEqual(0.95);
  });

  it("without a tag it cannot tell which task is wanted", async () => {
    // The four answers always differ, so at best it guesses: no task comes near its tagged accuracy.
    for (const task of TASKS) {
      const accuracy = await exactMatch(lm, tokenizer, inputs.map((xs) => makeExample(task, xs, false)));
      expect(accuracy, task).toBeLessThan(0.6);
    }
  });
});

describe("examples/data", () => {
  it.each(TASKS)("%s.{train,valid}.jsonl hold untagged examples of the task, validation inputs unseen", async (task) => {
    const digits = (prompt: string) => {
      const m = /^((?:\d )+)= $/.exec(prompt);
      expect(m, `prompt ${JSON.stringify(prompt)}`).not.toBeNull();
      return m![1].trim().split(" ").map(Number);
    };
    const read = async (split: string) => {
      const examples = await readExamples(join(DATA, `${task}.${split}.jsonl`));
      return examples.map((ex) => {
        if (ex.kind !== "prompt") throw new Error(`expected prompt/completion, got ${ex.kind}`);
        const xs = digits(ex.prompt);
        expect(ex.completion).toBe(solve(task, xs).join(" "));
        expect(Object.values(TAGS).some((tag) => ex.prompt.includes(tag))).toBe(false);
        return xs;
      });
    };
    const train = await read("train");
    const valid = await read("valid");
    expect(train.length).toBeGreaterThanOrEqual(200);
    expect(valid.length).toBeGreaterThanOrEqual(50);
    const seen = new Set(train.map((xs) => xs.join(" ")));
    expect(valid.filter((xs) => seen.has(xs.join(" ")))).toEqual([]);
    expect(valid.every(isHeldOut)).toBe(true);
  });
});
