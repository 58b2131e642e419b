// `npm run bench -- [engine] [load] [train] [serve] [distill] [methods] [decode] [quantize] [profile train|decode]`: runs the named
// benchmarks (all but profile by default), each in a process of its own so peak-memory numbers do not mix, and writes each
// result to bench/results/<name>.json (profile: profile-<kind>.json).
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { cpus } from "node:os";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { writeFileAtomic } from "../src/util/fs.js";

const benches: Record<string, () => Promise<object>> = {
  engine: async () => (await import("./engine.js")).benchEngine(),
  load: async () => (await import("./load.js")).benchLoad(),
  train: async () => (await import("./train.js")).benchTrain(),
  serve: async () => (await import("./serve.js")).benchServe(),
  distill: async () => (await import("./distill.js")).benchDistill(),
  methods: async () => (await import("./methods.js")).benchMethods(),
  decode: async () => (await import("./decode.js")).benchDecode(),
  quantize: async () => (await import("./quantize.js")).benchQuantize(),
  profile: async () => (await import("./profile.js")).benchProfile(profileKind),
};

const ortVersion = () => (createRequire(import.meta.url)("onnxruntime-node/package.json") as { version: string }).version;

function machineFacts() {
  const cpu = cpus();
  return { cpu: cpu[0]?.model ?? "unknown", cores: cpu.length, node: process.version, ort: ortVersion() };
}

const names = process.argv.slice(2).filter((a) => !a.startsWith("-"));
// `profile` takes the kind that follows it: `npm run bench -- profile decode`.
const profileAt = names.indexOf("profile");
const profileKind = profileAt >= 0 ? names.splice(profileAt + 1, 1)[0] : undefined;
const unknown = names.filter((n) => !(n in benches));
if (unknown.length > 0) {
  console.error(`unknown benchmark ${unknown.join(", ")}; choose from ${Object.keys(benches).join(", ")}`);
  process.exit(2);
}
const chosen = names.length > 0 ? names : Object.keys(benches).filter((n) => n !== "profile");
const resultName = (name: string) => (name === "profile" ? `profile-${profileKind}` : name);
if (chosen.length > 1) {
  for (const name of chosen) {
    const args = name === "profile" && profileKind !== undefined ? [name, profileKind] : [name];
    execFileSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), ...args], { stdio: "inherit" });
  }
} else {
  const [name] = chosen;
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  const result = { ...(await benches[name]()), machine: machineFacts(), date: new Date().toISOString() };
  await writeFileAtomic(fileURLToPath(new URL(`./results/${resultName(name)}.json`, import.meta.url)), JSON.stringify(result, null, 2) + "\n");
  console.log(`${resultName(name)}: ${JSON.stringify(result, null, 2)}`);
}
