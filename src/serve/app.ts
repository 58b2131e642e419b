/**
 * The HTTP surface on fastify: OpenAI's routes, /v1/classify, /healthz, /metrics and the static
 * playground; API keys, the body limit, refusing new requests while shutting down, and every error
 * answered in OpenAI's shape through errors.ts.
 */
import { existsSync } from "node:fs";
import { timingSafeEqual } from "node:crypto";
import { fileURLToPath } from "node:url";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import fastifyStatic from "@fastify/static";
import type { ServeContext } from "./context.js";
import { ServeError, toHttpError } from "./errors.js";
import { requestNotes, handleGeneration, paramOf } from "./generation.js";
import { classify } from "./classify.js";
import { listModels } from "./models.js";

export interface AppOptions {
  /** Accepted bearer tokens; empty: no key needed. */
  apiKeys: readonly string[];
  /** True once shutdown began: new requests get 503. */
  closing: () => boolean;
  log: (level: "info" | "warn" | "error", message: string) => void;
}

/** The playground (another module's static files), served at / when present. */
const PUBLIC_DIR = fileURLToPath(new URL("./public/", import.meta.url));

export async function buildApp(ctx: ServeContext, options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({ bodyLimit: ctx.limits.maxBodyBytes, return503OnClosing: false, forceCloseConnections: "idle", logger: false });
  const created = Math.floor(Date.now() / 1000);
  const keys = options.apiKeys.map((k) => Buffer.from(k));

  // Hooks in callback form: they run for every request, and an async hook costs a promise each time.
  app.addHook("onRequest", (request, reply, done) => {
    if (options.closing()) {
      reply.header("connection", "close");
      return done(new ServeError("server_shutting_down", "the server is shutting down: it finishes the requests it has and takes no new ones; retry on another replica", null));
    }
    if (keys.length > 0 && request.url.startsWith("/v1/") && !authorized(request, keys)) {
      return done(new ServeError("invalid_api_key", "missing or wrong API key: send the header 'Authorization: Bearer <key>'", null));
    }
    done();
  });
  app.addHook("onRequestAbort", (request, done) => {
    ctx.scheduler.arrived(request);
    done();
  });
  app.addHook("onResponse", (request, reply, done) => {
    ctx.scheduler.arrived(request);
    const notes = requestNotes.get(request);
    ctx.metrics.requests.inc({ endpoint: request.routeOptions.url ?? "unmatched", adapter: notes?.adapter ?? "none", status: String(notes?.status ?? reply.statusCode) });
    done();
  });
  app.setErrorHandler(async (err, request, reply) => {
    const http = toHttpError(err, paramOf(request.url.includes("chat") ? "chat" : "completion"));
    if (http.status >= 500) options.log("error", `${request.method} ${request.url}: ${(err as Error)?.stack ?? String(err)}`);
    return reply.status(http.status).headers(http.headers).send(http.body);
  });
  app.setNotFoundHandler(async (request, reply) => {
    const http = toHttpError(new ServeError("not_found", `no route ${request.method} ${request.url}`));
    return reply.status(http.status).send(http.body);
  });

  // Generation requests are awaited by the scheduler's next step from their first bytes (see Scheduler.arrive).
  const arrive = (request: FastifyRequest, _reply: unknown, done: () => void) => {
    ctx.scheduler.arrive(request);
    done();
  };
  app.post("/v1/completions", { onRequest: arrive }, (request, reply) => handleGeneration(ctx, "completion", request, reply));
  app.post("/v1/chat/completions", { onRequest: arrive }, (request, reply) => handleGeneration(ctx, "chat", request, reply));
  app.post("/v1/classify", async (request) => {
    const { label, response } = await classify(ctx, request.body);
    requestNotes.set(request, { adapter: label });
    return response;
  });
  app.get("/v1/models", async () => listModels(ctx.baseId, created, ctx.registry));
  app.get("/healthz", async () => ({
    status: "ok",
    model: ctx.baseId,
    adapters: ctx.registry.list().length,
    refused: ctx.registry.refusedCount,
    queue: ctx.scheduler.queueDepth,
    running: ctx.scheduler.batchSize,
  }));
  app.get("/metrics", async (_request, reply) => {
    ctx.metrics.adapters.set(ctx.registry.list().reduce((n, a) => n + a.versions.length, 0));
    return reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
  });
  if (existsSync(PUBLIC_DIR)) await app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: "/" });
  return app;
}

function authorized(request: FastifyRequest, keys: readonly Buffer[]): boolean {
  const match = /^Bearer (.+)$/.exec(request.headers.authorization ?? "");
  if (match === null) return false;
  const given = Buffer.from(match[1]);
  // Compare against every key, in constant time per key, so timing tells nothing about which part matched.
  let ok = false;
  for (const key of keys) ok = (key.length === given.length && timingSafeEqual(key, given)) || ok;
  return ok;
}
