/**
 * The adapter registry: a directory of `NAME/VERSION/` PEFT folders (adapter_config.json,
 * adapter_model.safetensors) each with a metadata.json (base model fingerprint, method, when it was
 * added, the fingerprints of the data it was trained on, eval metrics). Any number of processes may
 * share one registry directory: versions are immutable once published, so readers need no lock.
 *
 * Writes are atomic: an add stages the complete version in a hidden folder of the registry (same
 * file system) and publishes it with one rename, which fails rather than overwrite when another
 * process published the same version first; a remove renames the entry out of sight before deleting
 * it. A crash leaves at most a hidden staging or trash folder, which readers skip and the next add
 * sweeps away.
 */
import { existsSync, promises as fsp } from "node:fs";
import { hostname } from "node:os";
import { join, resolve, sep } from "node:path";
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { fail } from "../util/errors.js";
import { writeFileAtomic } from "../util/fs.js";
import { parseWith, readJsonFile } from "../formats/json.js";
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, baseFingerprint } from "../peft/adapter.js";
import { describeAdapter } from "../report/adapter-summary.js";
import { loadModel } from "../models/index.js";
import { baseModelOf, loadServable } from "../workflows.js";

export const METADATA_FILE = "metadata.json";
const STAGING = ".staging-";
const TRASH = ".trash-";
/** Staging folders of other machines are swept only this long after they were last touched. */
const FOREIGN_STAGING_AGE_MS = 60 * 60 * 1000;

/** Letters, digits, `.`, `_`, `-`; starts with a letter or digit: never a path, never `..`, never `:` or `@` (they separate model names). */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

const metadataSchema = z.strictObject({
  name: z.string(),
  version: z.number().int().min(1),
  /** PEFT's peft_type (PROMPT_TUNING, PREFIX_TUNING, LORA …). */
  method: z.string(),
  baseModel: z.string().nullable(),
  /** sha256 of the base model's token embeddings (see peft/adapter.ts). */
  baseFingerprint: z.string().nullable(),
  /** When it was added to the registry (ISO 8601). */
  created: z.string(),
  dataFingerprints: z.record(z.string(), z.string()).nullable(),
  metrics: z.record(z.string(), z.unknown()).nullable(),
  /** The folder it was added from. */
  source: z.string(),
});
export type AdapterMetadata = z.infer<typeof metadataSchema>;

export interface RegistryEntry extends AdapterMetadata {
  /** The version's folder, a PEFT adapter folder. */
  dir: string;
}

export interface RegistryListing {
  /** By name, then version. */
  adapters: RegistryEntry[];
  /** Entries that are not served, and why (a symlink out of the registry, a bad metadata.json …). */
  problems: { path: string; message: string }[];
}

/** `reverse` or `reverse@2`. */
export interface AdapterRef {
  name: string;
  version?: number;
}

/** A name as the registry stores it; anything else fails naming `field`. */
export function checkAdapterName(name: string, field = "name"): string {
  if (!NAME_PATTERN.test(name) || name === "base") {
    fail("usage", `adapter name ${JSON.stringify(name)} is not allowed: use letters, digits, ".", "_" and "-", starting with a letter or digit (at most 100 characters, not "base")`, { field });
  }
  return name;
}

/** `NAME` or `NAME@VERSION` (VERSION a positive integer). */
export function parseAdapterRef(ref: string, field = "name"): AdapterRef {
  const at = ref.lastIndexOf("@");
  if (at < 0) return { name: checkAdapterName(ref, field) };
  const version = Number(ref.slice(at + 1));
  if (!(Number.isInteger(version) && version >= 1)) fail("usage", `version in ${JSON.stringify(ref)} must be a positive integer (NAME@VERSION)`, { field });
  return { name: checkAdapterName(ref.slice(0, at), field), version };
}

export interface AddOptions {
  /** The registry directory (created if absent). */
  root: string;
  name: string;
  /** A PEFT adapter folder of any registered method (a training run's output works). */
  source: string;
  /** The base model (a folder or hub id): the adapter is refused if it was made for another one. */
  model?: string;
  /** Eval metrics to keep with it (e.g. `softprompt eval --json`'s result). */
  metrics?: Record<string, unknown>;
  /** Called once the version is completely staged, just before it is published (a crash here must change nothing). */
  onStaged?: (stagingDir: string) => void | Promise<void>;
}

export interface AddResult {
  entry: RegistryEntry;
  /** What could not be checked against the base model. */
  warnings: string[];
}

/** Add an adapter as the next version of `name`. */
export async function addAdapter(options: AddOptions): Promise<AddResult> {
  const root = resolve(options.root);
  const name = checkAdapterName(options.name, "--name");
  const source = resolve(options.source);
  // Read and check it first: a corrupt adapter or one for another base model never reaches the registry.
  const summary = await describeAdapter(source);
  let warnings: string[] = [];
  let fingerprint = summary.baseFingerprint;
  if (options.model !== undefined) {
    const model = await loadModel(options.model);
    warnings = (await loadServable(source, model, options.model)).warnings;
    // Checked as far as it can be: record the model it was checked against.
    fingerprint ??= baseFingerprint(baseModelOf(model, options.model).embeddings);
  }
  await fsp.mkdir(root, { recursive: true });
  await sweepLeftovers(root);

  const staging = join(root, `${STAGING}${hostname()}-${process.pid}-${randomBytes(4).toString("hex")}`);
  await fsp.mkdir(staging);
  try {
    for (const file of [ADAPTER_CONFIG, ADAPTER_WEIGHTS]) await copyDurably(join(source, file), join(staging, file));
    await fsp.mkdir(join(root, name), { recursive: true });
    // Another process may publish the same version between our look and our rename: then take the next one.
    for (let attempt = 0; attempt < 100; attempt++) {
      const version = (await versionsOf(join(root, name))).reduce((a, b) => Math.max(a, b), 0) + 1;
      const metadata: AdapterMetadata = {
        name,
        version,
        method: summary.method,
        baseModel: summary.baseModel,
        baseFingerprint: fingerprint,
        created: new Date().toISOString(),
        dataFingerprints: summary.dataFingerprints,
        metrics: options.metrics ?? null,
        source,
      };
      await writeFileAtomic(join(staging, METADATA_FILE), JSON.stringify(metadata, null, 2) + "\n");
      await options.onStaged?.(staging);
      const dir = join(root, name, String(version));
      try {
        await fsp.rename(staging, dir); // fails on an existing, non-empty version: never overwrites
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOTEMPTY" || code === "EEXIST") continue;
        throw err;
      }
      return { entry: { ...metadata, dir }, warnings };
    }
    return fail("file", "could not find a free version after 100 attempts: too many concurrent adds", { file: join(root, name) });
  } catch (err) {
    await fsp.rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/** Every adapter of the registry, with what is wrong with entries that cannot be served. */
export async function listRegistry(rootDir: string): Promise<RegistryListing> {
  const root = resolve(rootDir);
  const listing: RegistryListing = { adapters: [], problems: [] };
  let names: string[];
  try {
    names = (await fsp.readdir(root)).filter((n) => !n.startsWith(".")).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return listing;
    return fail("file", `cannot read the registry: ${(err as Error).message}`, { file: root }, err);
  }
  const realRoot = await fsp.realpath(root);
  for (const name of names) {
    const nameDir = join(root, name);
    if (!NAME_PATTERN.test(name)) {
      listing.problems.push({ path: nameDir, message: "not a valid adapter name: skipped" });
      continue;
    }
    if (!(await insideRoot(realRoot, nameDir, listing))) continue;
    if (!(await fsp.stat(nameDir)).isDirectory()) continue;
    for (const version of (await versionsOf(nameDir)).sort((a, b) => a - b)) {
      const dir = join(nameDir, String(version));
      const files = [ADAPTER_CONFIG, ADAPTER_WEIGHTS, METADATA_FILE];
      const missing = files.filter((f) => !existsSync(join(dir, f)));
      if (missing.length > 0) {
        listing.problems.push({ path: dir, message: `incomplete: no ${missing.join(", ")}` });
        continue;
      }
      let inside = await insideRoot(realRoot, dir, listing);
      for (const f of files) inside &&= await insideRoot(realRoot, join(dir, f), listing);
      if (!inside) continue;
      try {
        const metadata = parseWith(metadataSchema, await readJsonFile(join(dir, METADATA_FILE), "file"), "file", { file: join(dir, METADATA_FILE), describe: true });
        if (metadata.name !== name || metadata.version !== version) fail("file", `says ${metadata.name}@${metadata.version}, but sits in ${name}/${version}`, { file: join(dir, METADATA_FILE) });
        listing.adapters.push({ ...metadata, dir });
      } catch (err) {
        listing.problems.push({ path: dir, message: (err as Error).message });
      }
    }
  }
  return listing;
}

/** Remove every version of `NAME`, or one with `NAME@VERSION`; returns the versions removed. */
export async function removeAdapter(rootDir: string, ref: string): Promise<{ name: string; removed: number[] }> {
  const root = resolve(rootDir);
  const { name, version } = parseAdapterRef(ref, "NAME");
  const nameDir = join(root, name);
  const versions = await versionsOf(nameDir);
  const removed = version === undefined ? versions : versions.filter((v) => v === version);
  if (removed.length === 0) {
    fail("usage", `no adapter ${version === undefined ? name : `${name}@${version}`} in the registry ${root}`, { field: "NAME" });
  }
  // Out of sight in one rename; deleting the files after that can no longer leave half an entry visible.
  const trash = join(root, `${TRASH}${randomBytes(6).toString("hex")}`);
  await fsp.rename(version === undefined ? nameDir : join(nameDir, String(version)), trash);
  await fsp.rm(trash, { recursive: true, force: true });
  if (version !== undefined) await fsp.rmdir(nameDir).catch(() => undefined); // only if no version is left
  return { name, removed: removed.sort((a, b) => a - b) };
}

/** The integer-named folders of a name's folder (none when it does not exist). */
async function versionsOf(nameDir: string): Promise<number[]> {
  let entries: string[];
  try {
    entries = await fsp.readdir(nameDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw err;
  }
  return entries.filter((e) => /^[1-9][0-9]*$/.test(e)).map(Number);
}

/** False (and a problem noted) when the path resolves outside the registry, e.g. through a symlink. */
async function insideRoot(realRoot: string, path: string, listing: RegistryListing): Promise<boolean> {
  try {
    const real = await fsp.realpath(path);
    if (real === realRoot || real.startsWith(realRoot + sep)) return true;
    listing.problems.push({ path, message: `resolves outside the registry (to ${real}): refused` });
  } catch (err) {
    listing.problems.push({ path, message: `cannot be read: ${(err as Error).message}` });
  }
  return false;
}

/** Remove what crashed adds and removes left: trash always, staging of dead processes on this machine, old staging of others. */
async function sweepLeftovers(root: string): Promise<void> {
  const host = hostname();
  for (const entry of await fsp.readdir(root)) {
    const path = join(root, entry);
    let stale = entry.startsWith(TRASH);
    if (entry.startsWith(STAGING)) {
      const match = new RegExp(`^${STAGING}(.*)-(\\d+)-[0-9a-f]+$`).exec(entry);
      if (match !== null && match[1] === host) stale = !processAlive(Number(match[2]));
      else stale = Date.now() - (await fsp.stat(path)).mtimeMs > FOREIGN_STAGING_AGE_MS;
    }
    if (stale) await fsp.rm(path, { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Copy a file and flush it to disk before it is published. */
async function copyDurably(from: string, to: string): Promise<void> {
  await fsp.copyFile(from, to);
  const handle = await fsp.open(to, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
