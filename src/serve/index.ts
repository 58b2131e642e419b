/**
 * One frozen model, many adapters, one HTTP server: `startServer` loads the model once, follows the
 * adapter registry (registry.ts, live-registry.ts), and answers OpenAI-compatible requests whose
 * `model` picks the adapter, all of them sharing one continuously batched engine (scheduler.ts).
 *
 *   const server = await startServer({ model: "examples/models/tiny-tasks", adapters: "registry" });
 *   // POST `${server.url}/v1/completions` {"model": "reverse", "prompt": "3 1 4 = ", "temperature": 0}
 *   await server.close(); // finishes what is running, refuses anything new
 */
import { basename } from "node:path";
import { loadModel } from "../models/index.js";
import type { QuantizeMode } from "../quantize/index.js";
import { GenerationEngine } from "../infer/engine.js";
import { PromptCache } from "../infer/kv-cache.js";
import { buildApp } from "./app.js";
import { type ServeContext, type ServeLimits, DEFAULT_LIMITS } from "./context.js";
import { LiveRegistry } from "./live-registry.js";
import { ServeMetrics } from "./metrics.js";
import { Scheduler } from "./scheduler.js";

export type { ServeLimits } from "./context.js";
export { DEFAULT_LIMITS } from "./context.js";
export { addAdapter, listRegistry, removeAdapter, parseAdapterRef, checkAdapterName, type AddOptions, type AddResult, type AdapterMetadata, type RegistryEntry, type RegistryListing } from "./registry.js";

export interface ServeOptions extends Partial<ServeLimits> {
  /** A model folder or a Hugging Face hub id. */
  model: string;
  /** The registry directory (created if absent). */
  adapters: string;
  /** Default 0: any free port (see `url`). */
  port?: number;
  /** Default 127.0.0.1 (this machine only); 0.0.0.0 to serve a network. */
  host?: string;
  /** Bearer tokens accepted on /v1/*; none: open. */
  apiKeys?: string[];
  /** The base model's name in requests and /v1/models; default: the model folder's (or hub id's) last part. */
  baseName?: string;
  /** Serve with int8 or int4 projection weights (inference only; LoRA adapters are refused); default: float32. */
  quantize?: QuantizeMode;
  /** Rescan the registry at least this often (ms; default 2000; 0: only on file-system events). */
  rescanMs?: number;
  /** Where the server's notes go; default: warnings and errors to stderr. */
  log?: (level: "info" | "warn" | "error", message: string) => void;
}

export interface RunningServer {
  /** `http://host:port`, without a trailing slash. */
  url: string;
  /** Stop taking requests (503), let the running ones finish, then stop. */
  close(): Promise<void>;
}

const defaultLog = (level: "info" | "warn" | "error", message: string) => {
  if (level !== "info") process.stderr.write(`${level}: ${message}\n`);
};

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const log = options.log ?? defaultLog;
  const model = await loadModel(options.model, { quantize: options.quantize });
  const given = Object.fromEntries(Object.entries(options).filter(([k, v]) => k in DEFAULT_LIMITS && v !== undefined));
  const limits = { ...DEFAULT_LIMITS, ...given, contextLength: options.contextLength ?? model.config.maxPositions };
  const metrics = new ServeMetrics();
  const registry = await LiveRegistry.open({ root: options.adapters, model, modelName: options.model, rescanMs: options.rescanMs ?? 2000, log });
  const engine = new GenerationEngine(model.lm, { tokenizer: model.tokenizer });
  const ctx: ServeContext = {
    model,
    baseId: options.baseName ?? basename(options.model.replace(/[\\/]+$/, "")),
    registry,
    scheduler: new Scheduler(engine, limits, metrics),
    promptCache: new PromptCache(model.lm, Number.MAX_SAFE_INTEGER, limits.promptCacheBytes),
    metrics,
    limits,
  };
  let closing = false;
  const app = await buildApp(ctx, { apiKeys: options.apiKeys ?? [], closing: () => closing, log });
  const host = options.host ?? "127.0.0.1";
  try {
    await app.listen({ port: options.port ?? 0, host });
  } catch (err) {
    registry.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address !== null ? address.port : options.port;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    close: () =>
      (closed ??= (async () => {
        closing = true;
        // fastify's close waits for the requests in flight, which end when their rows do.
        await app.close();
        await ctx.scheduler.drained();
        registry.close();
      })()),
  };
}
