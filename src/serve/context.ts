/** What every route of one server shares, and the limits it enforces (with their defaults). */
import type { Model } from "../models/index.js";
import type { PromptCache } from "../infer/kv-cache.js";
import type { LiveRegistry } from "./live-registry.js";
import type { ServeMetrics } from "./metrics.js";
import type { Scheduler } from "./scheduler.js";

export interface ServeLimits {
  /** Request bodies larger than this are refused (413). */
  maxBodyBytes: number;
  /** The largest max_tokens a request may ask for. */
  maxTokens: number;
  /** The largest n (choices per prompt). */
  maxN: number;
  /** Rows advanced together by one engine step. */
  maxBatchSize: number;
  /** Rows waiting to join the batch; beyond it, 429 with Retry-After. */
  maxQueue: number;
  /** A request still running after this long is cancelled (408). */
  requestTimeoutMs: number;
  /** Memory for cached soft-prompt keys/values (least recently used evicted). */
  promptCacheBytes: number;
  /** Virtual tokens + prompt + max_tokens at most; default: the model's max_position_embeddings. */
  contextLength?: number;
}

export const DEFAULT_LIMITS: Required<Omit<ServeLimits, "contextLength">> = {
  maxBodyBytes: 1 << 20,
  maxTokens: 1024,
  maxN: 8,
  maxBatchSize: 32,
  maxQueue: 256,
  requestTimeoutMs: 120_000,
  promptCacheBytes: 256 << 20,
};

export interface ServeContext {
  model: Model;
  /** The base model's id in requests and /v1/models. */
  baseId: string;
  registry: LiveRegistry;
  scheduler: Scheduler;
  promptCache: PromptCache;
  metrics: ServeMetrics;
  limits: Required<ServeLimits>;
}
