// Stateless replicas: two `softprompt serve` processes on loopback share one registry directory; an
// add or a remove made by `softprompt registry` is seen by both without a restart. A replica killed
// (SIGKILL) under load loses nothing from the registry, the other keeps serving, and SIGTERM stops a
// replica gracefully (exit 0).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listRegistry } from "../../src/serve/index.js";
import { BIN, TINY, eventually, trainAdapters } from "./helpers.js";

const work = mkdtempSync(join(tmpdir(), "softprompt-replicas-"));
const root = join(work, "registry");
const children: ChildProcess[] = [];
let runs: Record<string, string>;

beforeAll(async () => {
  runs = await trainAdapters(join(work, "runs"), ["reverse"]);
});
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A replica on a free loopback port; resolves with its URL once it serves. */
function replica(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [BIN, "serve", "--model", TINY, "--adapters", root, "--port", "0", "--rescan-ms", "500", "--json"], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`replica did not start in 60 s: ${out}`)), 60_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line !== undefined) {
        clearTimeout(timer);
        resolve({ url: (JSON.parse(line) as { url: string }).url, child });
      }
    });
    child.once("exit", (code) => reject(new Error(`replica exited (${code}) before serving: ${out}`)));
  });
}

const modelIds = async (url: string) => ((await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] }).data.map((m) => m.id);
const complete = async (url: string, model: string) => {
  const r = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model, prompt: "3 1 4 = ", max_tokens: 6, temperature: 0 }) });
  return { status: r.status, body: (await r.json()) as { choices: { text: string }[] } };
};
const exited = (child: ChildProcess) => new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once("exit", (code) => resolve(code))));

describe("replicas sharing one registry directory", () => {
  it("both see an add and a remove; one killed under load loses nothing; SIGTERM exits cleanly", async () => {
    const [a, b] = await Promise.all([replica(), replica()]);
    expect(await modelIds(a.url)).toEqual(["tiny-tasks"]);

    const added = await cli(["registry", "add", "--adapters", root, "--name", "reverse", "--model", TINY, runs.reverse, "--json"]);
    expect(added.code).toBe(0);
    for (const r of [a, b]) expect(await eventually(async () => (await modelIds(r.url)).includes("reverse"))).toBe(true);
    const answers = await Promise.all([complete(a.url, "reverse"), complete(b.url, "reverse")]);
    expect(answers.map((x) => x.status)).toEqual([200, 200]);
    expect(answers[0].body.choices[0].text).toBe(answers[1].body.choices[0].text);

    await cli(["registry", "add", "--adapters", root, "--name", "again", runs.reverse]);
    const removed = await cli(["registry", "rm", "--adapters", root, "again", "--json"]);
    expect(JSON.parse(removed.stdout)).toEqual({ name: "again", removed: [1] });
    for (const r of [a, b]) expect(await eventually(async () => !(await modelIds(r.url)).includes("again"))).toBe(true);

    // SIGKILL one replica in the middle of a load: the registry is as it was, the other replica serves on.
    const before = await listRegistry(root);
    const load = Array.from({ length: 8 }, () => complete(a.url, "reverse").catch(() => undefined));
    await new Promise((r) => setTimeout(r, 30));
    a.child.kill("SIGKILL");
    await Promise.all(load);
    expect(await listRegistry(root)).toEqual(before);
    expect((await complete(b.url, "reverse")).status).toBe(200);

    b.child.kill("SIGTERM");
    expect(await exited(b.child)).toBe(0);
  });
});
