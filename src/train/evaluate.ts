/**
 * Loss over a dataset: the mean negative log-likelihood per target token over all of it
 * (each batch's mean weighted by its token count), for a soft prompt or for none.
 */
import type { CausalLM } from "../models/causal-lm.js";
import { type Feeds, Program } from "../runtime/session.js";
import { promptLossFeeds, promptLossGraph, type TokenBatch } from "./objective.js";

export interface LossResult {
  loss: number;
  perplexity: number;
  tokens: number;
}

/** A compiled forward-only loss for one prompt width (0: no prompt). */
export class LossEvaluator {
  private constructor(
    private readonly lm: CausalLM,
    private readonly numVirtual: number,
    private readonly program: Program,
  ) {}

  static async create(lm: CausalLM, numVirtual: number): Promise<LossEvaluator> {
    const g = promptLossGraph(lm, numVirtual);
    return new LossEvaluator(lm, numVirtual, await Program.compile({ loss: g.loss, count: g.count }));
  }

  async evaluate(batches: readonly TokenBatch[], prompt?: Float32Array): Promise<LossResult> {
    const weights = this.lm.weights.feeds();
    const d = this.lm.config.hiddenSize;
    const promptFeed: Feeds = prompt && this.numVirtual > 0 ? { prompt: { data: prompt, dims: [this.numVirtual, d] } } : {};
    let total = 0;
    let tokens = 0;
    for (const batch of batches) {
      const out = await this.program.run({ ...weights, ...promptFeed, ...promptLossFeeds(batch, this.numVirtual) });
      const count = (out.count.data as Float32Array)[0];
      total += (out.loss.data as Float32Array)[0] * count;
      tokens += count;
    }
    const loss = tokens > 0 ? total / tokens : Number.NaN;
    return { loss, perplexity: Math.exp(loss), tokens };
  }
}
