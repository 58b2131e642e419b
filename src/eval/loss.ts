/**
 * Loss over a dataset: the mean negative log-likelihood per target token over all of it (each
 * batch's mean weighted by its token count), for the bare model or with an adapter's changes.
 * Positions are each row's own, so the loss of a dataset does not depend on batch size or padding.
 */
import type { Value } from "../graph/ir.js";
import * as o from "../graph/ops.js";
import type { CausalLM } from "../models/causal-lm.js";
import type { Batch } from "../data/index.js";
import { type Feeds, Program } from "../runtime/session.js";
import type { Adapter } from "../peft/adapter.js";
import type { Adaptation, Params } from "../peft/method.js";
import { type VirtualTokens, lossFeeds, lossGraph } from "../objective/lm.js";

export interface LossResult {
  loss: number;
  perplexity: number;
  tokens: number;
}

/** Graph inputs for a method's parameters, named as the method names them. */
export function paramInputs(params: Params): Map<string, Value> {
  return new Map([...params].map(([name, p]) => [name, o.input(name, "float32", p.shape)]));
}

/** A compiled forward-only loss: the bare model, or the model with one kind of adapter (its values fed per call). */
export class LossEvaluator {
  private constructor(
    private readonly lm: CausalLM,
    private readonly program: Program,
    private readonly virtualTokens: VirtualTokens,
    private readonly adaptation: Adaptation | undefined,
  ) {}

  /** `shape`: an adapter whose method and parameter shapes the graph is built for (its values are fed to `evaluate`). */
  static async create(lm: CausalLM, shape?: Pick<Adapter, "method" | "config" | "params">): Promise<LossEvaluator> {
    const adaptation = shape === undefined ? undefined : shape.method.adapt(shape.config, paramInputs(shape.params), lm);
    const g = lossGraph(lm, adaptation);
    return new LossEvaluator(lm, await Program.compile({ loss: g.loss, count: g.count }), g, adaptation);
  }

  /** The dataset loss; `params` are the adapter's values (the shapes given to `create`). */
  async evaluate(batches: readonly Batch<ArrayLike<number>>[], params?: Params): Promise<LossResult> {
    const weights = this.lm.weights.feeds();
    const paramFeeds: Feeds = {};
    for (const [name, p] of params ?? []) paramFeeds[name] = { data: p.data, dims: p.shape };
    let total = 0;
    let tokens = 0;
    for (const batch of batches) {
      const extra = this.adaptation?.feeds(batch) ?? {};
      const out = await this.program.run({ ...weights, ...paramFeeds, ...extra, ...lossFeeds(batch, this.virtualTokens) });
      const count = (out.count.data as Float32Array)[0];
      total += (out.loss.data as Float32Array)[0] * count;
      tokens += count;
    }
    const loss = tokens > 0 ? total / tokens : Number.NaN;
    return { loss, perplexity: Math.exp(loss), tokens };
  }
}
