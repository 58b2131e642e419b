// The engine benchmark: GPT-2-small- and SmolLM2-135M-shaped stacks, batch 8 × 128 (20 virtual + 108 text tokens),
// forward (loss) and forward + backward to the soft prompt, against the machine's matmul peak measured in the same run.
import { loadavg } from "node:os";
import { grad } from "../src/graph/autodiff.js";
import { buildModel } from "../src/models/build.js";
import { Program } from "../src/runtime/session.js";
import { promptLossFeeds, promptLossGraph } from "../src/peft/prompt-tuning/model.js";
import { Rng } from "../src/util/rng.js";
import { forwardFlops, inputBackwardFlops, measureMatmulPeak, peakRssMb, randomWeights, shapeConfig, timeIt } from "./common.js";

export const BATCH = 8;
export const VIRTUAL = 20;
export const TEXT = 108;

/** A batch of random token ids with a label on every text token (loss on all text tokens). */
export function randomBatch(vocab: number, seed = 7) {
  const rng = new Rng(seed);
  const inputIds = Int32Array.from({ length: BATCH * TEXT }, () => rng.int(vocab));
  return { inputIds, attentionMask: new Int32Array(BATCH * TEXT).fill(1), labels: inputIds, batchSize: BATCH, seqLen: TEXT };
}

export async function setupPromptTuning(shape: string) {
  const config = shapeConfig(shape);
  const lm = buildModel(config, randomWeights(config));
  const graph = promptLossGraph(lm, VIRTUAL);
  const [gPrompt] = grad(graph.loss, [graph.prompt!]);
  const forward = await Program.compile({ loss: graph.loss });
  const trainStep = await Program.compile({ loss: graph.loss, grad: gPrompt });
  const rng = new Rng(3);
  const prompt = Float32Array.from({ length: VIRTUAL * config.hiddenSize }, () => rng.normal() * 0.02);
  const feeds = {
    ...lm.weights.feeds(),
    ...promptLossFeeds(randomBatch(config.vocabSize), VIRTUAL),
    prompt: { data: prompt, dims: [VIRTUAL, config.hiddenSize] },
  };
  const seq = VIRTUAL + TEXT;
  const headRows = BATCH * TEXT; // the last virtual position and every text position but the last predict a label
  const fwdFlops = forwardFlops(config, BATCH, seq, headRows);
  const stepFlops = fwdFlops + inputBackwardFlops(config, BATCH, seq, headRows);
  return { config, forward, trainStep, feeds, fwdFlops, stepFlops, tokens: BATCH * seq };
}

/** The shapes measured: GPT-2 small, and SmolLM2-135M for the Llama family (RMSNorm, rotary, grouped-query attention, SwiGLU). */
const SHAPES = ["gpt2-small", "smollm2-135m"];

export async function benchEngine() {
  const peak = await measureMatmulPeak();
  const shapes = [];
  for (const shape of SHAPES) {
    const s = await setupPromptTuning(shape);
    const fwdSeconds = await timeIt(() => s.forward.run(s.feeds), { warmup: 1, repeats: 3 });
    const stepSeconds = await timeIt(() => s.trainStep.run(s.feeds), { warmup: 1, repeats: 3 });
    const measure = (seconds: number, flops: number) => ({
      seconds,
      tokens_per_s: s.tokens / seconds,
      gflops: flops / seconds / 1e9,
      fraction_of_peak: flops / seconds / 1e9 / peak,
    });
    // The process's high-water mark so far: the earlier shape's programs are still held.
    shapes.push({ shape, forward: measure(fwdSeconds, s.fwdFlops), train_step: measure(stepSeconds, s.stepFlops), peak_rss_mb: peakRssMb() });
  }
  return {
    batch: BATCH,
    virtual_tokens: VIRTUAL,
    text_tokens: TEXT,
    shapes,
    peak_gflops: peak,
    load_average: loadavg(),
  };
}
