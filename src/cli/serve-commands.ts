/**
 * `softprompt serve` and `softprompt registry add|list|rm`: parse the flags, call src/serve, print
 * the result (one JSON object with --json). Added to the program by main.ts.
 */
import { type Command, Option } from "commander";
import { readJsonFile, isPlainObject } from "../formats/json.js";
import { fail } from "../util/errors.js";
import { formatTable } from "../report/table.js";
import { DEFAULT_LIMITS, addAdapter, listRegistry, removeAdapter, startServer, type RegistryListing } from "../serve/index.js";
import { integer, list } from "./options.js";
import { QUANTIZE_HELP, QUANTIZE_MODES } from "../quantize/index.js";
import { printView, warn } from "./output.js";

/** Where `serve` reads API keys besides --api-key: comma-separated. */
const API_KEYS_ENV = "SOFTPROMPT_API_KEYS";

export function addServeCommands(program: Command): void {
  const d = DEFAULT_LIMITS;
  program
    .command("serve")
    .description("an OpenAI-compatible server: one frozen model, every adapter of a registry, requests batched together")
    .requiredOption("--model <model>", "a model folder or a Hugging Face hub id")
    .requiredOption("--adapters <dir>", "the adapter registry (created if absent; shared by replicas)")
    .option("--port <n>", "port (0: any free one)", integer("--port", 0), 8000)
    .option("--host <host>", "address to listen on (0.0.0.0: every interface)", "127.0.0.1")
    .option("--api-key <key>", `accept this bearer token on /v1/* (repeat; also ${API_KEYS_ENV}, comma-separated); none: open`, list)
    .option("--base-name <name>", "the base model's name in requests (default: the model folder's name)")
    .option("--max-body-bytes <n>", "largest request body", integer("--max-body-bytes", 1), d.maxBodyBytes)
    .option("--max-tokens <n>", "largest max_tokens a request may ask for", integer("--max-tokens", 1), d.maxTokens)
    .option("--max-n <n>", "largest n (choices per prompt)", integer("--max-n", 1), d.maxN)
    .option("--max-batch-size <n>", "rows advanced together by one step", integer("--max-batch-size", 1), d.maxBatchSize)
    .option("--max-queue <n>", "rows waiting for the batch before 429", integer("--max-queue", 1), d.maxQueue)
    .option("--request-timeout-ms <n>", "cancel a request after this long (408)", integer("--request-timeout-ms", 1), d.requestTimeoutMs)
    .option("--prompt-cache-mb <n>", "memory for cached soft-prompt keys/values", integer("--prompt-cache-mb", 1), d.promptCacheBytes >> 20)
    .option("--context-length <n>", "virtual tokens + prompt + max_tokens at most (default: the model's)", integer("--context-length", 1))
    .option("--rescan-ms <n>", "rescan the registry at least this often (0: only on file-system events)", integer("--rescan-ms", 0), 2000)
    .addOption(new Option("--quantize <mode>", `${QUANTIZE_HELP}; LoRA adapters are refused`).choices(QUANTIZE_MODES))
    .option("--json", "print one JSON object when serving starts")
    .action(async (opts) => {
      const fromEnv = (process.env[API_KEYS_ENV] ?? "").split(",").map((k) => k.trim()).filter((k) => k !== "");
      const { promptCacheMb, apiKey, json, ...rest } = opts;
      const server = await startServer({ ...rest, apiKeys: [...(apiKey ?? []), ...fromEnv], promptCacheBytes: promptCacheMb << 20 });
      printView({ url: server.url, model: opts.model, adapters: opts.adapters }, json, (r) => `serving ${r.model} with the adapters in ${r.adapters} on ${r.url} (Ctrl-C or SIGTERM stops after the requests in flight)\n`);
      // Graceful: refuse new requests, finish those in flight, then exit; a second signal exits at once.
      let stopping = false;
      const stop = () => {
        if (stopping) process.exit(130);
        stopping = true;
        void server.close().then(() => process.exit(0));
      };
      process.on("SIGTERM", stop).on("SIGINT", stop);
    });

  const registry = program.command("registry").description("the adapter registry: NAME/VERSION/ PEFT folders with metadata, shared by servers");
  registry
    .command("add")
    .description("add an adapter folder as the next version of NAME (atomic: a crash leaves the registry as it was)")
    .argument("<adapter>", "a PEFT adapter folder (e.g. a training run's --output)")
    .requiredOption("--adapters <dir>", "the registry")
    .requiredOption("--name <name>", "the adapter's name (letters, digits, . _ -)")
    .option("--model <model>", "refuse the adapter unless it fits this base model")
    .option("--metrics <file>", "a JSON object of eval metrics to keep with it (e.g. from `softprompt eval --json`)")
    .option("--json", "print one JSON object")
    .action(async (adapter: string, opts: { adapters: string; name: string; model?: string; metrics?: string; json?: boolean }) => {
      const metrics = opts.metrics === undefined ? undefined : await readJsonFile(opts.metrics, "file", { expected: "a JSON object of metrics" });
      if (metrics !== undefined && !isPlainObject(metrics)) fail("usage", "the metrics file must hold a JSON object", { file: opts.metrics, field: "--metrics" });
      const { entry, warnings } = await addAdapter({ root: opts.adapters, name: opts.name, source: adapter, model: opts.model, metrics });
      warnings.forEach(warn);
      printView({ ...entry, warnings }, opts.json, (e) => `added ${e.name}@${e.version} (${e.method}) → ${e.dir}\n`);
    });
  registry
    .command("list")
    .description("every adapter and version in the registry, and entries that cannot be served")
    .requiredOption("--adapters <dir>", "the registry")
    .option("--json", "print one JSON object")
    .action(async (opts: { adapters: string; json?: boolean }) => {
      printView(await listRegistry(opts.adapters), opts.json, registryView);
    });
  registry
    .command("rm")
    .description("remove every version of NAME, or one version with NAME@VERSION")
    .argument("<ref>", "NAME or NAME@VERSION")
    .requiredOption("--adapters <dir>", "the registry")
    .option("--json", "print one JSON object")
    .action(async (ref: string, opts: { adapters: string; json?: boolean }) => {
      const result = await removeAdapter(opts.adapters, ref);
      printView(result, opts.json, (r) => `removed ${r.removed.map((v) => `${r.name}@${v}`).join(", ")}\n`);
    });
}

function registryView(listing: RegistryListing): string {
  const rows = listing.adapters.map((a) => [a.name, a.version, a.method, a.created, a.baseFingerprint?.slice(0, 12) ?? null, a.baseModel]);
  let out = listing.adapters.length > 0 ? formatTable(["name", "version", "method", "added", "base", "base model"], rows, { alignRight: [false, true, false, false, false, false] }) : "no adapters\n";
  for (const p of listing.problems) out += `not served: ${p.path}: ${p.message}\n`;
  return out;
}
