/**
 * Model folders from a local path or a Hugging Face hub id.
 *
 * Hub downloads land in the standard Hugging Face cache, so Python tools and softprompt share one copy:
 *   <cache>/models--org--name/refs/<revision>        the commit sha the revision pointed to
 *   <cache>/models--org--name/blobs/<etag>           file contents, named by their hash
 *   <cache>/models--org--name/snapshots/<sha>/<file> symlinks into blobs/ (copies where links fail)
 * Only the files softprompt reads are fetched: config, tokenizer, and safetensors weights.
 */
import { createWriteStream, existsSync, promises as fsp } from "node:fs";
import { randomBytes } from "node:crypto";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { HubApiError, downloadFile, modelInfo, pathsInfo } from "@huggingface/hub";
import { SoftpromptError, fail } from "../util/errors.js";
import { writeFileAtomic } from "../util/fs.js";
import { INDEX_FILE, SINGLE_FILE, readShardIndex } from "./checkpoint.js";

export interface ResolveOptions {
  /** Branch, tag or commit sha; default "main". */
  revision?: string;
  /** Never touch the network; default: HF_HUB_OFFLINE is set to 1/true/yes/on. */
  offline?: boolean;
  /** Default: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Default: HF_ENDPOINT, else https://huggingface.co. */
  hubUrl?: string;
  /** Default: HF_TOKEN. Needed for gated and private models. */
  accessToken?: string;
}

const HUB_FILES_REQUIRED = ["config.json", "tokenizer.json"];
const HUB_FILES_OPTIONAL = ["generation_config.json", "tokenizer_config.json"];
const WEIGHTS = `${SINGLE_FILE} (or ${INDEX_FILE} and its shards)`;

/** Hub ids as huggingface_hub validates them: [org/]name, word characters, "-" and ".". */
const HUB_ID = /^(?:\w(?:[\w.-]{0,94}\w)?\/)?\w(?:[\w.-]{0,94}\w)?$/;
const COMMIT_SHA = /^[0-9a-f]{40}$/;

export function hubCacheDir(): string {
  const env = process.env;
  return env.HF_HUB_CACHE || join(env.HF_HOME || join(homedir(), ".cache", "huggingface"), "hub");
}

function isOffline(): boolean {
  return ["1", "true", "yes", "on"].includes((process.env.HF_HUB_OFFLINE ?? "").toLowerCase());
}

/**
 * A folder holding config.json and safetensors weights: `pathOrId` itself when it is a local folder,
 * otherwise the cached snapshot of the hub model `org/name`, downloaded first when files are missing.
 */
export async function resolveModelDir(pathOrId: string, opts: ResolveOptions = {}): Promise<string> {
  const stats = await fsp.stat(pathOrId).catch(() => undefined);
  if (stats !== undefined) {
    if (!stats.isDirectory()) fail("file", "expected a model folder, found a file", { file: pathOrId });
    const missing = await missingFiles(pathOrId, ["config.json"]);
    if (missing.length > 0) fail("file", `not a model folder: missing ${missing.join(", ")}`, { file: pathOrId });
    return pathOrId;
  }
  if (!HUB_ID.test(pathOrId) || pathOrId.includes("--") || pathOrId.includes("..")) {
    fail("hub", "is neither an existing folder nor a hub id like org/name", { file: pathOrId });
  }
  const revision = opts.revision ?? "main";
  if (revision.split("/").some((part) => part === "" || part === "." || part === "..")) {
    fail("hub", `revision ${JSON.stringify(revision)} is not a branch, tag or commit`, { file: pathOrId });
  }
  const storage = join(opts.cacheDir ?? hubCacheDir(), `models--${pathOrId.replace("/", "--")}`);

  const cached = await cachedSnapshot(storage, revision);
  const missing = cached === undefined ? [...HUB_FILES_REQUIRED, WEIGHTS] : await missingFiles(cached, HUB_FILES_REQUIRED);
  if (cached !== undefined && missing.length === 0) return cached;
  if (opts.offline ?? isOffline()) {
    fail(
      "hub",
      `offline, and the cache lacks ${missing.join(", ")} for revision ${revision}; ` +
        "connect and unset HF_HUB_OFFLINE to download them",
      { file: cached ?? storage },
    );
  }
  const accessToken = opts.accessToken ?? (process.env.HF_TOKEN || undefined);
  if (accessToken !== undefined && !accessToken.startsWith("hf_")) {
    fail("hub", "the access token (HF_TOKEN) must start with hf_", { file: pathOrId });
  }
  const hubUrl = (opts.hubUrl ?? (process.env.HF_ENDPOINT || "https://huggingface.co")).replace(/\/+$/, "");
  try {
    return await download(pathOrId, revision, storage, { hubUrl, accessToken });
  } catch (err) {
    const errno = err as NodeJS.ErrnoException;
    if (errno.syscall === undefined) throw err;
    const reason = errno.code ?? errno.message;
    fail("file", `cannot write to the Hugging Face cache (${reason})`, { file: errno.path ?? storage }, err);
  }
}

/** The snapshot folder a revision points to in the cache, if the cache knows the revision. */
async function cachedSnapshot(storage: string, revision: string): Promise<string | undefined> {
  if (COMMIT_SHA.test(revision)) return join(storage, "snapshots", revision);
  const sha = await fsp.readFile(join(storage, "refs", revision), "utf8").catch(() => undefined);
  return sha !== undefined && COMMIT_SHA.test(sha.trim()) ? join(storage, "snapshots", sha.trim()) : undefined;
}

/** Which of `required` and the safetensors weights (every shard, if sharded) a folder lacks. */
async function missingFiles(dir: string, required: string[]): Promise<string[]> {
  const missing = required.filter((f) => !existsSync(join(dir, f)));
  if (existsSync(join(dir, SINGLE_FILE))) return missing;
  if (!existsSync(join(dir, INDEX_FILE))) return [...missing, WEIGHTS];
  const shards = new Set((await readShardIndex(join(dir, INDEX_FILE))).values());
  return [...missing, ...[...shards].filter((s) => !existsSync(join(dir, s)))];
}

interface HubAccess {
  hubUrl: string;
  accessToken: string | undefined;
}

async function download(id: string, revision: string, storage: string, access: HubAccess): Promise<string> {
  const { sha } = await hubCall(id, `looking up revision ${revision}`, access, () =>
    modelInfo({ name: id, revision, additionalFields: ["sha"], ...access }),
  );
  if (!COMMIT_SHA.test(sha ?? "")) {
    fail("hub", `the hub answered with a malformed commit sha ${JSON.stringify(sha)}`, { file: id });
  }
  const candidates = [...HUB_FILES_REQUIRED, ...HUB_FILES_OPTIONAL, SINGLE_FILE, INDEX_FILE];
  const remote = await remoteFiles(id, sha, candidates, access);
  for (const file of HUB_FILES_REQUIRED) {
    if (!remote.has(file)) fail("hub", `the repo has no ${file} at revision ${revision}`, { file: id });
  }
  const weights = remote.has(SINGLE_FILE) ? SINGLE_FILE : remote.has(INDEX_FILE) ? INDEX_FILE : undefined;
  if (weights === undefined) {
    const expected = `${SINGLE_FILE} or ${INDEX_FILE}`;
    fail("hub", `the repo has no safetensors weights (${expected}) at revision ${revision}`, { file: id });
  }

  const snapshot = join(storage, "snapshots", sha);
  const files = [...HUB_FILES_REQUIRED, ...HUB_FILES_OPTIONAL.filter((f) => remote.has(f)), weights];
  for (const file of files) await fetchIntoCache(id, sha, file, remote.get(file) as RemoteFile, storage, access);
  if (weights === INDEX_FILE) {
    const shards = [...new Set((await readShardIndex(join(snapshot, INDEX_FILE))).values())];
    const remoteShards = await remoteFiles(id, sha, shards, access);
    for (const shard of shards) {
      const found =
        remoteShards.get(shard) ?? fail("hub", `shard ${shard} named by ${INDEX_FILE} is not in the repo`, { file: id });
      await fetchIntoCache(id, sha, shard, found, storage, access);
    }
  }
  // Written last, so an interrupted download leaves the revision unresolved rather than half there.
  if (revision !== sha) {
    const ref = join(storage, "refs", revision);
    await fsp.mkdir(dirname(ref), { recursive: true });
    await writeFileAtomic(ref, sha);
  }
  return snapshot;
}

interface RemoteFile {
  /** The blob's name in the cache: the LFS sha256 for large files, else the git object id, as huggingface_hub names it. */
  blob: string;
  size: number;
}

/** Which of `paths` exist at the commit, with their hashes and sizes (one request for all of them). */
async function remoteFiles(id: string, sha: string, paths: string[], access: HubAccess): Promise<Map<string, RemoteFile>> {
  const infos = await hubCall(id, "listing files", access, () => pathsInfo({ repo: id, paths, revision: sha, ...access }));
  const found = new Map<string, RemoteFile>();
  for (const info of infos) {
    if (info.type !== "file" || !paths.includes(info.path)) continue;
    const blob = info.lfs?.oid ?? info.oid ?? "";
    // The hash becomes a file name: accept only what a hash looks like.
    if (!/^[0-9a-f]{40,64}$/.test(blob)) {
      fail("hub", `unexpected hash ${JSON.stringify(blob)} for ${info.path}`, { file: id });
    }
    found.set(info.path, { blob, size: info.lfs?.size ?? info.size });
  }
  return found;
}

/** Download one file of a commit into blobs/ (unless its blob is there already) and link it into the snapshot. */
async function fetchIntoCache(
  id: string,
  sha: string,
  file: string,
  remote: RemoteFile,
  storage: string,
  access: HubAccess,
): Promise<void> {
  const pointer = join(storage, "snapshots", sha, file);
  if (existsSync(pointer)) return;
  const blob = join(storage, "blobs", remote.blob);
  if (!existsSync(blob)) {
    await fsp.mkdir(dirname(blob), { recursive: true });
    const partial = `${blob}.${randomBytes(6).toString("hex")}.incomplete`;
    try {
      await hubCall(id, `downloading ${file}`, access, async () => {
        const data = await downloadFile({ repo: id, path: file, revision: sha, ...access });
        if (data === null) fail("hub", `${file} is missing on the hub at commit ${sha}`, { file: id });
        await pipeline(Readable.fromWeb(data.stream() as NodeReadableStream), createWriteStream(partial));
      });
      const { size } = await fsp.stat(partial);
      if (size !== remote.size) fail("hub", `download of ${file} gave ${size} bytes, expected ${remote.size}`, { file: id });
      await fsp.rename(partial, blob);
    } finally {
      await fsp.rm(partial, { force: true });
    }
  }
  await fsp.mkdir(dirname(pointer), { recursive: true });
  await linkOrCopy(blob, pointer);
}

async function linkOrCopy(blob: string, pointer: string): Promise<void> {
  try {
    // Relative, like huggingface_hub, so a moved cache keeps working.
    await fsp.symlink(relative(dirname(pointer), blob), pointer);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return; // another process linked it first
    await fsp.copyFile(blob, pointer);
  }
}

/** Run a hub request, turning its failures into errors that say what to do. */
async function hubCall<T>(id: string, doing: string, access: HubAccess, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    // Ours already, or the disk's (reported by resolveModelDir): only network and hub failures are explained here.
    if (err instanceof SoftpromptError || (err as NodeJS.ErrnoException).syscall !== undefined) throw err;
    const place = { file: id };
    if (err instanceof HubApiError) {
      const hint =
        err.statusCode === 401 || err.statusCode === 403
          ? // The hub answers 401 for repos that do not exist too, so as not to reveal private ones.
            "no such model, or it is gated or private: check the id; for gated models accept the terms and set HF_TOKEN"
          : err.statusCode === 404
            ? "check the model id and revision"
            : err.message;
      fail("hub", `${doing}: the hub answered ${err.statusCode} (${hint})`, place, err);
    }
    const reason = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
    const hint = "set HF_HUB_OFFLINE=1 to use only the cache";
    fail("hub", `${doing}: cannot reach ${access.hubUrl} (${reason}); ${hint}`, place, err);
  }
}
