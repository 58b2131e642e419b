// The adapter registry on disk: versions, metadata, names that could escape the directory, adapters
// for another base model, concurrent adds, and a process killed mid-add (SIGKILL) leaving it intact.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { addAdapter, listRegistry, removeAdapter, parseAdapterRef } from "../../src/serve/index.js";
import { SoftpromptError } from "../../src/util/errors.js";
import { TINY, foreignAdapter, trainAdapters } from "./helpers.js";

const work = mkdtempSync(join(tmpdir(), "softprompt-registry-"));
let adapters: Record<string, string>;

beforeAll(async () => {
  adapters = await trainAdapters(join(work, "runs"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const names = async (root: string) => (await listRegistry(root)).adapters.map((a) => `${a.name}@${a.version}`);

async function usageError(p: Promise<unknown>): Promise<SoftpromptError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SoftpromptError);
  return err as SoftpromptError;
}

describe("registry", () => {
  it("adds versions with metadata, lists them, removes one version or a whole name", async () => {
    const root = join(work, "basic");
    const first = await addAdapter({ root, name: "reverse", source: adapters.reverse, model: TINY, metrics: { accuracy: 0.9 } });
    expect(first.entry).toMatchObject({ name: "reverse", version: 1, method: "PROMPT_TUNING", metrics: { accuracy: 0.9 } });
    expect(first.entry.baseFingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(first.entry.dataFingerprints?.["--data"]).toMatch(/^[0-9a-f]{64}$/);
    expect(readdirSync(first.entry.dir).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors", "metadata.json"]);
    await addAdapter({ root, name: "reverse", source: adapters.reverse });
    await addAdapter({ root, name: "sort", source: adapters.sort });
    expect(await names(root)).toEqual(["reverse@1", "reverse@2", "sort@1"]);

    expect(await removeAdapter(root, "reverse@1")).toEqual({ name: "reverse", removed: [1] });
    expect(await names(root)).toEqual(["reverse@2", "sort@1"]);
    expect(await removeAdapter(root, "sort")).toEqual({ name: "sort", removed: [1] });
    expect(await names(root)).toEqual(["reverse@2"]);
    expect(existsSync(join(root, "sort"))).toBe(false);
    expect((await usageError(removeAdapter(root, "sort"))).message).toContain("no adapter sort");
    // Nothing hidden is left behind by adds and removes that finished.
    expect(readdirSync(root).filter((e) => e.startsWith("."))).toEqual([]);
  });

  it("refuses names that are paths, absolute, empty, reserved or malformed versions", async () => {
    const root = join(work, "names");
    for (const name of ["../escape", "/etc/passwd", "a/b", "..", ".hidden", "", "base", "x:y", "x@1", "a\\b"]) {
      const err = await usageError(addAdapter({ root, name, source: adapters.reverse }));
      expect(err.place.field).toBe("--name");
    }
    expect(() => parseAdapterRef("reverse@0")).toThrow(/positive integer/);
    expect(() => parseAdapterRef("../x@1")).toThrow(/not allowed/);
    await usageError(removeAdapter(root, "../basic"));
    expect(existsSync(join(work, "escape"))).toBe(false);
  });

  it("refuses an adapter made for another base model when --model is given, and adds nothing", async () => {
    const root = join(work, "foreign");
    const source = await foreignAdapter(adapters.reverse, join(work, "foreign-adapter"));
    const err = await usageError(addAdapter({ root, name: "alien", source, model: TINY }));
    expect(err.code).toBe("adapter");
    expect(err.message).toContain("another base model");
    expect(await names(root)).toEqual([]);
  });

  it("lists symlinks out of the directory and bad metadata as problems, never as adapters", async () => {
    const root = join(work, "links");
    await addAdapter({ root, name: "reverse", source: adapters.reverse });
    const outside = join(work, "outside");
    mkdirSync(join(outside, "1"), { recursive: true });
    symlinkSync(outside, join(root, "sneaky"));
    mkdirSync(join(root, "broken", "1"), { recursive: true });
    for (const f of ["adapter_config.json", "adapter_model.safetensors"]) writeFileSync(join(root, "broken", "1", f), "");
    writeFileSync(join(root, "broken", "1", "metadata.json"), "{not json");
    const listing = await listRegistry(root);
    expect(listing.adapters.map((a) => a.name)).toEqual(["reverse"]);
    expect(listing.problems.map((p) => p.path).sort()).toEqual([join(root, "broken", "1"), join(root, "sneaky")]);
    expect(listing.problems.find((p) => p.path.endsWith("sneaky"))!.message).toContain("outside the registry");
    expect(listing.problems.find((p) => p.path.endsWith("1"))!.message).toContain("not valid JSON");
    // A version folder without its files (e.g. copied by hand, half done) is incomplete, not served.
    mkdirSync(join(root, "half", "1"), { recursive: true });
    expect((await listRegistry(root)).problems.find((p) => p.path === join(root, "half", "1"))!.message).toContain("incomplete");
  });

  it("concurrent adds of one name get distinct versions", async () => {
    const root = join(work, "concurrent");
    const results = await Promise.all(Array.from({ length: 4 }, () => addAdapter({ root, name: "reverse", source: adapters.reverse })));
    expect(results.map((r) => r.entry.version).sort()).toEqual([1, 2, 3, 4]);
    expect(await names(root)).toEqual(["reverse@1", "reverse@2", "reverse@3", "reverse@4"]);
  });

  it("a process killed (SIGKILL) mid-add leaves the registry as it was; the next add sweeps its staging", async () => {
    const root = join(work, "killed");
    await addAdapter({ root, name: "reverse", source: adapters.reverse });
    const before = await listRegistry(root);
    // A child that stages a complete version, says so, and waits to be killed before publishing it.
    const script = `
      import { addAdapter } from ${JSON.stringify(new URL("../../src/serve/index.ts", import.meta.url).pathname)};
      await addAdapter({ root: ${JSON.stringify(root)}, name: "sort", source: ${JSON.stringify(adapters.sort)},
        onStaged: () => { process.stdout.write("staged\\n"); return new Promise(() => {}); } });`;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    const staged = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 60_000);
      child.stdout.on("data", (d: Buffer) => {
        if (d.toString().includes("staged")) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
    expect(staged).toBe(true);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));

    expect(readdirSync(root).some((e) => e.startsWith(".staging-"))).toBe(true); // the half-made add is there, hidden
    expect(await listRegistry(root)).toEqual(before);
    const after = await addAdapter({ root, name: "sort", source: adapters.sort });
    expect(after.entry.version).toBe(1);
    expect(readdirSync(root).filter((e) => e.startsWith("."))).toEqual([]);
    expect(await names(root)).toEqual(["reverse@1", "sort@1"]);
  });
});
