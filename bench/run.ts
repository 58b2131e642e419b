// `npm run bench -- [engine] [load] [train]`: runs the named benchmarks (all by default) and writes
// each result to bench/results/<name>.json.
import { mkdirSync } from "node:fs";
import { cpus } from "node:os";
import { createRequire } from "node:module";
import { writeFileAtomic } from "../src/util/fs.js";

const ortVersion = () => (createRequire(import.meta.url)("onnxruntime-node/package.json") as { version: string }).version;

const benches: Record<string, () => Promise<object>> = {
  engine: async () => (await import("./engine.js")).benchEngine(),
  load: async () => (await import("./load.js")).benchLoad(),
  train: async () => (await import("./train.js")).benchTrain(),
};

const names = process.argv.slice(2).filter((a) => !a.startsWith("-"));
const unknown = names.filter((n) => !(n in benches));
if (unknown.length > 0) {
  console.error(`unknown benchmark ${unknown.join(", ")}; choose from ${Object.keys(benches).join(", ")}`);
  process.exit(2);
}
mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
for (const name of names.length > 0 ? names : Object.keys(benches)) {
  // Each benchmark in its own process would give cleaner peak-RSS numbers; run them one per invocation for that.
  const result = { ...(await benches[name]()), machine: machineFacts(), date: new Date().toISOString() };
  await writeFileAtomic(new URL(`./results/${name}.json`, import.meta.url).pathname, JSON.stringify(result, null, 2) + "\n");
  console.log(`${name}: ${JSON.stringify(result, null, 2)}`);
}

function machineFacts() {
  const cpu = cpus();
  return { cpu: cpu[0]?.model ?? "unknown", cores: cpu.length, node: process.version, ort: ortVersion() };
}
