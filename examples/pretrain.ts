/**
 * Pretrain the offline demo's base model, examples/models/tiny-tasks: a tiny Llama that learns the
 * four tagged skills of examples/tasks.ts (copy, reverse, sort, increment) from scratch, with every
 * weight trained by softprompt's own engine: the LM loss graph is differentiated with respect to all
 * weights (`grad(loss, weights)`), compiled to ONNX and run by ONNX Runtime; AdamW updates the host
 * copies in place.
 *
 *     npx tsx examples/pretrain.ts [--steps 3000] [--seed 2] [--out examples/models/tiny-tasks]
 *
 * Seeded and deterministic (for one machine and thread count). At the end it prints each task's exact
 * match on held-out inputs with the tag, and without it: untagged, the model cannot know the task.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { grad } from "../src/graph/autodiff.js";
import * as o from "../src/graph/ops.js";
import * as nn from "../src/graph/nn.js";
import type { Value } from "../src/graph/ir.js";
import { buildModel } from "../src/models/build.js";
import type { CausalLM } from "../src/models/causal-lm.js";
import { tensorSpec } from "../src/models/checkpoint.js";
import { type ModelConfig, parseModelConfig } from "../src/models/config.js";
import { arangePositions, attentionPattern } from "../src/models/inputs.js";
import { writeSafetensors, type TensorToWrite } from "../src/formats/safetensors.js";
import { Program, type Tensor } from "../src/runtime/session.js";
import { type Tokenizer, tokenizerFromParts } from "../src/tokenizer/index.js";
import { assertFinite, clipGradNorm } from "../src/train/clip.js";
import { AdamW } from "../src/train/optim.js";
import { learningRate } from "../src/train/schedule.js";
import { Rng } from "../src/util/rng.js";
import {
  MAX_NEW_TOKENS,
  TASKS,
  TAGS,
  VOCAB,
  type Task,
  exactMatch,
  makeExample,
  sampleInput,
  sampleInputs,
  tokenizerFiles,
} from "./tasks.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const MODEL_DIR = resolve(HERE, "models/tiny-tasks");

/** HF transformers 4.x LlamaConfig fields. */
const CONFIG = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  vocab_size: VOCAB.length,
  hidden_size: 64,
  intermediate_size: 192,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  hidden_act: "silu",
  max_position_embeddings: 64,
  rms_norm_eps: 1e-6,
  rope_theta: 10000.0,
  rope_scaling: null,
  attention_bias: false,
  attention_dropout: 0.0,
  mlp_bias: false,
  tie_word_embeddings: true,
  initializer_range: 0.02,
  pretraining_tp: 1,
  use_cache: true,
  bos_token_id: null,
  eos_token_id: 0,
  pad_token_id: 0,
  torch_dtype: "float32",
  transformers_version: "4.46.0",
};

const GENERATION_CONFIG = { eos_token_id: 0, pad_token_id: 0, do_sample: false, max_new_tokens: MAX_NEW_TOKENS };

const TRAIN = {
  batchSize: 64,
  lr: 3e-3,
  minLr: 1e-4,
  warmupSteps: 100,
  weightDecay: 0.01,
  maxGradNorm: 1.0,
  logEvery: 50,
  evalEvery: 500,
  /** Held-out inputs scored per task, at the end (a quarter as many during training). */
  evalExamples: 200,
  /** Rows that start with a random prefix (see sampleRow), its longest length, and how often an item is a random vector. */
  prefixedFraction: 0.5,
  maxPrefix: 8,
  prefixVectorProb: 0.3,
  /** Rows with a blend of a tag and something else in the tag's place; that something is a random vector this often. */
  blendFraction: 0.3,
  blendVectorProb: 0.3,
};

// ---------------------------------------------------------------- model

/**
 * HF's LlamaPreTrainedModel._init_weights: every linear and embedding weight N(0, initializer_range²),
 * RMSNorm weights 1. Drawn in tensorSpec order, so a seed fixes them.
 */
function initWeights(config: ModelConfig, std: number, rng: Rng): Map<string, Float32Array> {
  const tensors = new Map<string, Float32Array>();
  for (const { name, shape } of tensorSpec(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size);
    if (name.endsWith("norm.weight")) data.fill(1);
    else for (let i = 0; i < size; i++) data[i] = std * rng.normal();
    tensors.set(name, data);
  }
  return tensors;
}

/**
 * Mean cross-entropy of the answer tokens (and the EOS after them), with the LM head applied only at
 * the positions that predict them, as src/train/objective.ts does for prompts. Rows are right-padded:
 * under the causal mask, padding after a row's last token never reaches its labelled positions.
 * Positions marked in `is_vector` take the vector in `vectors` instead of their token's embedding.
 */
function lmLoss(lm: CausalLM): Value {
  const d = lm.config.hiddenSize;
  const ids = o.input("input_ids", "int64", ["batch", "seq"]);
  const isVector = o.input("is_vector", "bool", ["batch", "seq", 1]);
  const vectors = o.input("vectors", "float32", ["batch", "seq", d]);
  const positions = o.input("position_ids", "int64", ["batch", "seq"]);
  const allowed = o.input("allowed", "bool", ["batch", 1, "seq", "seq"]);
  const labelPositions = o.input("label_positions", "int64", ["labels"]);
  const labelTargets = o.input("label_targets", "int64", ["labels"]);
  const inputsEmbeds = o.where(isVector, vectors, lm.embed(ids)); // [B, T, d]
  const { hidden } = lm.forward({ inputsEmbeds, positions, allowed });
  const picked = o.gather(o.reshape(hidden, [-1, d]), labelPositions, 0); // [M, d]
  return nn.crossEntropy(lm.lmHead(picked), labelTargets);
}

/** A prefix item: a token id, or a vector that takes the place of a token embedding. */
type Item = number | Float32Array;

interface Row {
  items: Item[];
  /** Index of the first answer token: positions answerStart-1 .. end-2 predict the answer and the EOS. */
  answerStart: number;
}

/**
 * One pretraining row: prefix ++ tag ++ prompt ++ completion ++ EOS, the texts encoded separately as
 * src/data/tokenize.ts does. Beside the demo's own format,
 *
 *     reverse: 3 1 4 = 4 1 3 <eos>
 *
 * half the rows start with a few random tokens and random vectors (other tags among them: the task is
 * the last tag, the one right before the input), and some rows hold a blend of a tag with something
 * else in the tag's place:
 *
 *     ⟨random tokens, vectors⟩ ⟨λ·reverse: + (1-λ)·x⟩ 3 1 4 = 4 1 3 <eos>     reverse with probability λ
 *
 * where x is a token that is not a digit, or a random vector, and the answer follows x's task, or a
 * random one, the rest of the time. Both are for prompt tuning. A soft prompt's vectors sit where the
 * prefix and the tag are: a model that ignores whatever comes before the tag accepts a prompt of any
 * length and content, and one whose choice of task moves smoothly as a vector moves towards a tag
 * gives the prompt a gradient to follow from wherever it starts. Without them, prompt tuning from
 * many starting points (sampled vocabulary, other lengths) got stuck far from any tag.
 */
function sampleRow(rng: Rng, tokenizer: Tokenizer, embed: Float32Array, d: number): Row {
  const tagIds = TASKS.map((t) => tokenizer.tokenToId(TAGS[t])!);
  const nonDigits = VOCAB.map((_, id) => id).filter((id) => !/^[0-9]$/.test(VOCAB[id]));
  const row = (id: number) => embed.subarray(id * d, (id + 1) * d);

  let task = TASKS[rng.int(TASKS.length)];
  const prefix: Item[] = [];
  if (rng.next() < TRAIN.prefixedFraction) {
    const length = 1 + rng.int(TRAIN.maxPrefix);
    for (let i = 0; i < length; i++) {
      prefix.push(rng.next() < TRAIN.prefixVectorProb ? randomVector(rng, d) : rng.int(tokenizer.vocabSize));
    }
  }
  if (rng.next() < TRAIN.blendFraction) {
    const a = rng.int(TASKS.length);
    const lambda = rng.next();
    const x = rng.next() < TRAIN.blendVectorProb ? randomVector(rng, d) : nonDigits[rng.int(nonDigits.length)];
    const xTask = typeof x === "number" && tagIds.includes(x) ? TASKS[tagIds.indexOf(x)] : TASKS[rng.int(TASKS.length)];
    task = rng.next() < lambda ? TASKS[a] : xTask;
    const tag = row(tagIds[a]);
    const other = typeof x === "number" ? row(x) : x;
    prefix.push(Float32Array.from({ length: d }, (_, k) => lambda * tag[k] + (1 - lambda) * other[k]));
  } else prefix.push(tagIds[TASKS.indexOf(task)]);
  const ex = makeExample(task, sampleInput(rng, "train"), false);
  const prompt = [...prefix, ...tokenizer.encode(ex.prompt, { addSpecialTokens: true })];
  const completion = tokenizer.encode(ex.completion, { addSpecialTokens: false });
  return { items: [...prompt, ...completion, tokenizer.eosTokenIds[0]], answerStart: prompt.length };
}

/** N(0, s²) per element, with the scale s log-uniform over [0.05, 1.5]: soft prompts start at any size. */
function randomVector(rng: Rng, d: number): Float32Array {
  const s = Math.exp(Math.log(0.05) + rng.next() * Math.log(1.5 / 0.05));
  return Float32Array.from({ length: d }, () => s * rng.normal());
}

function batchFeeds(batch: Row[], pad: number, d: number): { feeds: Record<string, Tensor>; tokens: number } {
  const T = Math.max(...batch.map((r) => r.items.length));
  const B = batch.length;
  const ids = new BigInt64Array(B * T).fill(BigInt(pad));
  const isVector = new Uint8Array(B * T);
  const vectors = new Float32Array(B * T * d);
  const positions: bigint[] = [];
  const targets: bigint[] = [];
  batch.forEach((r, b) => {
    r.items.forEach((item, t) => {
      if (typeof item === "number") ids[b * T + t] = BigInt(item);
      else {
        isVector[b * T + t] = 1;
        vectors.set(item, (b * T + t) * d);
      }
    });
    for (let t = r.answerStart - 1; t < r.items.length - 1; t++) {
      positions.push(BigInt(b * T + t));
      targets.push(BigInt(r.items[t + 1] as number));
    }
  });
  const feeds = {
    input_ids: { data: ids, dims: [B, T] },
    is_vector: { data: isVector, dims: [B, T, 1] },
    vectors: { data: vectors, dims: [B, T, d] },
    position_ids: arangePositions(B, T),
    allowed: attentionPattern(batch.map(() => Array<number>(T).fill(1)), T),
    label_positions: { data: BigInt64Array.from(positions), dims: [positions.length] },
    label_targets: { data: BigInt64Array.from(targets), dims: [targets.length] },
  };
  return { feeds, tokens: batch.reduce((n, r) => n + r.items.length, 0) };
}

// ---------------------------------------------------------------- evaluation

interface Accuracy {
  tagged: Record<Task, number>;
  untagged: Record<Task, number>;
}

/** Exact match per task on held-out inputs, with and without the tag (the same inputs both ways). */
async function evaluate(lm: CausalLM, tokenizer: Tokenizer, inputs: number[][]): Promise<Accuracy> {
  const tagged = {} as Record<Task, number>;
  const untagged = {} as Record<Task, number>;
  for (const task of TASKS) {
    tagged[task] = await exactMatch(lm, tokenizer, inputs.map((xs) => makeExample(task, xs, true)));
    untagged[task] = await exactMatch(lm, tokenizer, inputs.map((xs) => makeExample(task, xs, false)));
  }
  return { tagged, untagged };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const row = (acc: Record<Task, number>) => TASKS.map((t) => `${t} ${pct(acc[t])}`).join("  ");

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      steps: { type: "string", default: "3000" },
      seed: { type: "string", default: "2" },
      out: { type: "string", default: MODEL_DIR },
    },
  });
  const steps = Number(values.steps);
  const seed = Number(values.seed);
  const outDir = resolve(values.out!);

  const files = tokenizerFiles();
  const tokenizer = tokenizerFromParts({
    tokenizerJson: files.tokenizer,
    tokenizerConfig: files.tokenizerConfig,
    generationConfig: GENERATION_CONFIG,
  });
  const config = parseModelConfig(CONFIG, "config.json");
  if (tokenizer.vocabSize !== config.vocabSize) throw new Error(`tokenizer has ${tokenizer.vocabSize} ids, config ${config.vocabSize}`);

  const rng = new Rng(seed);
  const params = initWeights(config, CONFIG.initializer_range, rng);
  const lm = buildModel(config, params);
  const names = [...params.keys()];
  const count = [...params.values()].reduce((n, p) => n + p.length, 0);
  console.log(`tiny-tasks: llama, ${config.numLayers} layers, hidden ${config.hiddenSize}, ${count.toLocaleString()} parameters`);

  // The whole model is the trainable set: one gradient output per weight.
  const loss = lmLoss(lm);
  const grads = grad(loss, names.map((n) => lm.weights.get(n)));
  const outputs: Record<string, Value> = { loss };
  grads.forEach((g, i) => (outputs[`grad_${i}`] = g));
  let t0 = performance.now();
  const program = await Program.compile(outputs);
  console.log(`compiled the training graph in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const evalRng = new Rng(seed + 1);
  const evalInputs = sampleInputs(evalRng, "heldout", TRAIN.evalExamples);
  const optimizer = new AdamW({ weightDecay: TRAIN.weightDecay });
  const schedule = { lr: TRAIN.lr, minLr: TRAIN.minLr, warmupSteps: TRAIN.warmupSteps, totalSteps: steps, decay: "cosine" as const };
  const pad = tokenizer.padTokenId ?? 0;

  t0 = performance.now();
  let windowStart = t0;
  let windowTokens = 0;
  let windowLoss = 0;
  for (let step = 0; step < steps; step++) {
    // A mixed batch: each row a random task on a random pretraining input (see sampleRow).
    const batch = Array.from({ length: TRAIN.batchSize }, () => sampleRow(rng, tokenizer, params.get("model.embed_tokens.weight")!, config.hiddenSize));
    const { feeds, tokens } = batchFeeds(batch, pad, config.hiddenSize);
    const weightFeeds: Record<string, Tensor> = {};
    for (const name of names) weightFeeds[name] = { data: params.get(name)!, dims: lm.weights.tensor(name).shape };
    const out = await program.run({ ...feeds, ...weightFeeds });

    const lossValue = (out.loss.data as Float32Array)[0];
    const gradMap = new Map(names.map((n, i) => [n, out[`grad_${i}`].data as Float32Array]));
    assertFinite(lossValue, step);
    assertFinite(gradMap, step);
    clipGradNorm(gradMap, TRAIN.maxGradNorm);
    optimizer.step(params, gradMap, learningRate(step, schedule));

    windowTokens += tokens;
    windowLoss += lossValue;
    if ((step + 1) % TRAIN.logEvery === 0 || step === steps - 1) {
      const now = performance.now();
      const n = (step % TRAIN.logEvery) + 1;
      const rate = windowTokens / ((now - windowStart) / 1000);
      console.log(
        `step ${String(step + 1).padStart(5)}/${steps}  loss ${(windowLoss / n).toFixed(4)}  ` +
          `lr ${learningRate(step, schedule).toExponential(2)}  ${Math.round(rate)} tokens/s  ${((now - t0) / 1000).toFixed(0)} s`,
      );
      windowStart = now;
      windowTokens = 0;
      windowLoss = 0;
    }
    if ((step + 1) % TRAIN.evalEvery === 0 && step < steps - 1) {
      const acc = await evaluate(lm, tokenizer, evalInputs.slice(0, TRAIN.evalExamples / 4));
      console.log(`  held-out, tagged:  ${row(acc.tagged)}`);
    }
  }
  const trainSeconds = (performance.now() - t0) / 1000;

  const acc = await evaluate(lm, tokenizer, evalInputs);
  console.log(`\ntrained ${steps} steps in ${trainSeconds.toFixed(0)} s`);
  console.log(`held-out exact match (${evalInputs.length} inputs per task):`);
  console.log(`  with the tag:     ${row(acc.tagged)}`);
  console.log(`  without the tag:  ${row(acc.untagged)}`);

  await mkdir(outDir, { recursive: true });
  const tensors: Record<string, TensorToWrite> = {};
  for (const name of names) tensors[name] = { dtype: "F32", shape: lm.weights.tensor(name).shape, data: params.get(name)! };
  await writeSafetensors(join(outDir, "model.safetensors"), tensors, { format: "pt" });
  const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
  await writeFile(join(outDir, "config.json"), json(CONFIG));
  await writeFile(join(outDir, "generation_config.json"), json(GENERATION_CONFIG));
  await writeFile(join(outDir, "tokenizer.json"), json(files.tokenizer));
  await writeFile(join(outDir, "tokenizer_config.json"), json(files.tokenizerConfig));
  console.log(`wrote ${outDir}`);
}

await main();
