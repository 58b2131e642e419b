import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { existsSync, promises as fsp, readlinkSync } from "node:fs";
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { hubCacheDir, resolveModelDir } from "../src/formats/hub.js";
import { writeSafetensors } from "../src/formats/safetensors.js";
import { SoftpromptError } from "../src/util/errors.js";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const goldenGpt2 = resolve(repoRoot, "../shared/golden/gpt2/model");

/**
 * A fake hub on 127.0.0.1 answering the routes the client uses:
 *   GET  /api/models/<id>/revision/<rev>     -> {sha}
 *   POST /api/models/<id>/paths-info/<sha>   -> [{path, type, oid, size, lfs?}] for the paths that exist
 *   GET  /<id>/resolve/<sha>/<file>          -> the file, honouring `Range` (206 + Content-Range), with an ETag
 * Like the real hub, .safetensors files are LFS (oid = sha256) and other files plain git blobs (oid = sha1).
 */
interface FakeRepo {
  sha: string;
  files: Map<string, Buffer>;
}

class FakeHub {
  readonly repos = new Map<string, FakeRepo>();
  readonly requests: string[] = [];
  readonly authorization: (string | undefined)[] = [];
  private server!: Server;
  url = "";

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((done) => this.server.listen(0, "127.0.0.1", done));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    await new Promise((done) => this.server.close(done));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.url);
    this.requests.push(`${req.method} ${url.pathname}`);
    this.authorization.push(req.headers.authorization);
    const info = url.pathname.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/);
    if (info?.[1].startsWith("gated/") && req.headers.authorization === undefined) {
      res.statusCode = 401;
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify({ error: "Access to model gated/model is restricted." }));
      return;
    }
    if (info) {
      const repo = this.repos.get(info[1]);
      if (!repo || (info[2] !== "main" && info[2] !== repo.sha)) return this.notFound(res, "RepoNotFound");
      res.setHeader("Content-Type", "application/json");
      const siblings = [...repo.files.keys()].map((rfilename) => ({ rfilename }));
      res.end(JSON.stringify({ _id: "x", id: info[1], sha: repo.sha, siblings, private: false }));
      return;
    }
    const paths = url.pathname.match(/^\/api\/models\/([^/]+\/[^/]+)\/paths-info\/([^/]+)$/);
    if (paths && req.method === "POST") {
      const repo = this.repos.get(paths[1]);
      if (!repo || paths[2] !== repo.sha) return this.notFound(res, "RevisionNotFound");
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const asked: string[] = JSON.parse(Buffer.concat(chunks).toString("utf8")).paths;
      const found = asked.filter((p) => repo.files.has(p)).map((path) => describeFile(path, repo.files.get(path) as Buffer));
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify(found));
      return;
    }
    const file = url.pathname.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    const repo = file ? this.repos.get(file[1]) : undefined;
    const body = file && repo && file[2] === repo.sha ? repo.files.get(decodeURIComponent(file[3])) : undefined;
    if (!body) return this.notFound(res, "EntryNotFound");
    res.setHeader("ETag", `"${createHash("sha256").update(body).digest("hex")}"`);
    res.setHeader("Content-Type", "application/octet-stream");
    const range = req.headers.range?.match(/^bytes=(\d+)-(\d+)$/);
    if (range) {
      const [start, end] = [Number(range[1]), Math.min(Number(range[2]), body.length - 1)];
      res.statusCode = 206;
      res.setHeader("Content-Range", `bytes ${start}-${end}/${body.length}`);
      res.end(body.subarray(start, end + 1));
    } else {
      res.setHeader("Content-Length", body.length);
      res.end(body);
    }
  }

  private notFound(res: ServerResponse, code: string): void {
    res.statusCode = 404;
    res.setHeader("X-Error-Code", code);
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ error: code }));
  }
}

function describeFile(path: string, body: Buffer) {
  const gitOid = createHash("sha1").update(`blob ${body.length}\0`).update(body).digest("hex");
  const lfs = path.endsWith(".safetensors")
    ? { oid: createHash("sha256").update(body).digest("hex"), size: body.length, pointerSize: 134 }
    : undefined;
  return { type: "file", path, oid: gitOid, size: lfs ? 134 : body.length, lfs };
}

const SHA = "0123456789abcdef0123456789abcdef01234567";
const SHARDED_SHA = "fedcba9876543210fedcba9876543210fedcba98";

let hub: FakeHub;
let work: string;
let home: string;
const HF_ENV = ["HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_ENDPOINT"];
const savedEnv = Object.fromEntries(HF_ENV.map((key) => [key, process.env[key]]));

beforeAll(async () => {
  hub = new FakeHub();
  await hub.start();
  work = await fsp.mkdtemp(join(tmpdir(), "softprompt-hub-"));
  // A sharded repo written here; the golden gpt2 repo too when ../shared is present.
  const shardDir = join(work, "sharded-src");
  await fsp.mkdir(shardDir);
  await writeSafetensors(join(shardDir, "a.safetensors"), { x: { dtype: "F32", shape: [2], data: Float32Array.from([1, 2]) } });
  await writeSafetensors(join(shardDir, "b.safetensors"), { y: { dtype: "F32", shape: [1], data: Float32Array.from([3]) } });
  hub.repos.set("tiny/sharded", {
    sha: SHARDED_SHA,
    files: new Map([
      ["config.json", Buffer.from('{"model_type": "llama"}')],
      ["tokenizer.json", Buffer.from("{}")],
      ["model.safetensors.index.json", Buffer.from(JSON.stringify({ weight_map: { x: "model-00001-of-00002.safetensors", y: "model-00002-of-00002.safetensors" } }))],
      ["model-00001-of-00002.safetensors", await fsp.readFile(join(shardDir, "a.safetensors"))],
      ["model-00002-of-00002.safetensors", await fsp.readFile(join(shardDir, "b.safetensors"))],
      ["pytorch_model.bin", Buffer.from("never downloaded")],
    ]),
  });
  if (existsSync(goldenGpt2)) {
    const files = new Map<string, Buffer>();
    for (const name of await fsp.readdir(goldenGpt2)) files.set(name, await fsp.readFile(join(goldenGpt2, name)));
    files.set("README.md", Buffer.from("not needed"));
    hub.repos.set("golden/gpt2", { sha: SHA, files });
  }
});

afterAll(async () => {
  await hub.stop();
  await fsp.rm(work, { recursive: true, force: true });
});

beforeEach(async () => {
  home = await fsp.mkdtemp(join(work, "hf-home-"));
  for (const key of HF_ENV) delete process.env[key];
  process.env.HF_HOME = home;
  process.env.HF_ENDPOINT = hub.url;
  hub.requests.length = 0;
  hub.authorization.length = 0;
});

afterEach(() => {
  for (const [key, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
});

async function hubError(promise: Promise<unknown>): Promise<SoftpromptError> {
  const err = await promise.then(
    () => {
      throw new Error("expected a failure");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SoftpromptError);
  return err as SoftpromptError;
}

describe("local folders", () => {
  it.skipIf(!existsSync(goldenGpt2))("a model folder resolves to itself", async () => {
    expect(await resolveModelDir(goldenGpt2)).toBe(goldenGpt2);
    expect(hub.requests).toEqual([]);
  });

  it("a folder without config.json or weights names both", async () => {
    const dir = join(work, "empty-model");
    await fsp.mkdir(dir, { recursive: true });
    const err = await hubError(resolveModelDir(dir));
    expect(err.code).toBe("file");
    expect(err.message).toBe(
      `${dir}: not a model folder: missing config.json, model.safetensors (or model.safetensors.index.json and its shards)`,
    );
  });

  it("ids that are not paths or hub ids are refused without a request", async () => {
    for (const bad of ["./no-such-folder", "a/b/c", "org/na--me", "org/-name", "org/name."]) {
      const err = await hubError(resolveModelDir(bad));
      expect(err.code).toBe("hub");
      expect(err.message).toContain("is neither an existing folder nor a hub id like org/name");
    }
    expect(hub.requests).toEqual([]);
  });
});

describe.skipIf(!existsSync(goldenGpt2))("hub downloads into the Hugging Face cache layout", () => {
  it("downloads only the needed files, then resolves offline from the cache", async () => {
    const dir = await resolveModelDir("golden/gpt2", { accessToken: "hf_secret" });
    const storage = join(home, "hub", "models--golden--gpt2");
    expect(dir).toBe(join(storage, "snapshots", SHA));
    expect(hubCacheDir()).toBe(join(home, "hub"));

    // The routes the client used, for whoever maintains the fake hub.
    expect(hub.requests[0]).toBe("GET /api/models/golden/gpt2/revision/main");
    expect(hub.requests.filter((r) => r.includes("/resolve/")).every((r) => r.includes(`/resolve/${SHA}/`))).toBe(true);
    expect(hub.requests.some((r) => r.includes("README.md"))).toBe(false);
    expect(hub.authorization.every((a) => a === "Bearer hf_secret")).toBe(true);

    expect((await fsp.readFile(join(storage, "refs", "main"), "utf8")).trim()).toBe(SHA);
    for (const name of await fsp.readdir(goldenGpt2)) {
      const same = (await fsp.readFile(join(dir, name))).equals(await fsp.readFile(join(goldenGpt2, name)));
      expect(same, name).toBe(true);
      expect(readlinkSync(join(dir, name))).toMatch(/^\.\.\/\.\.\/blobs\/[0-9a-f]{40,64}$/);
    }
    // Blobs are named as huggingface_hub names them, so Python and softprompt share one copy.
    const weights = await fsp.readFile(join(goldenGpt2, "model.safetensors"));
    const lfsOid = createHash("sha256").update(weights).digest("hex");
    expect(readlinkSync(join(dir, "model.safetensors"))).toBe(`../../blobs/${lfsOid}`);
    expect((await fsp.readdir(join(storage, "blobs"))).some((b) => b.includes("incomplete"))).toBe(false);

    hub.requests.length = 0;
    process.env.HF_HUB_OFFLINE = "1";
    expect(await resolveModelDir("golden/gpt2")).toBe(dir);
    delete process.env.HF_HUB_OFFLINE;
    // A complete snapshot needs no request even online.
    expect(await resolveModelDir("golden/gpt2")).toBe(dir);
    expect(await resolveModelDir("golden/gpt2", { revision: SHA, offline: true })).toBe(dir);
    expect(hub.requests).toEqual([]);
  });

  it("fetches again only what went missing, and relinks blobs it still has", async () => {
    const dir = await resolveModelDir("golden/gpt2");
    const tokenizerBlob = resolve(dir, readlinkSync(join(dir, "tokenizer.json")));
    await fsp.rm(join(dir, "tokenizer.json"));
    await fsp.rm(tokenizerBlob);
    await fsp.rm(join(dir, "config.json"));
    hub.requests.length = 0;
    expect(await resolveModelDir("golden/gpt2")).toBe(dir);
    expect(hub.requests.filter((r) => r.includes("/resolve/"))).toEqual([
      `GET /golden/gpt2/resolve/${SHA}/tokenizer.json`, // the probe for size and ETag
      `GET /golden/gpt2/resolve/${SHA}/tokenizer.json`, // the download
    ]);
    const same = (await fsp.readFile(join(dir, "tokenizer.json"))).equals(await fsp.readFile(join(goldenGpt2, "tokenizer.json")));
    expect(same).toBe(true);
    expect(existsSync(join(dir, "config.json"))).toBe(true);
  });

  it("honours HF_HUB_CACHE over HF_HOME", async () => {
    process.env.HF_HUB_CACHE = join(home, "elsewhere");
    const dir = await resolveModelDir("golden/gpt2");
    expect(dir).toBe(join(home, "elsewhere", "models--golden--gpt2", "snapshots", SHA));
  });
});

describe("sharded repos", () => {
  it("downloads the index and every shard, not the pytorch weights", async () => {
    const dir = await resolveModelDir("tiny/sharded");
    expect(dir).toBe(join(home, "hub", "models--tiny--sharded", "snapshots", SHARDED_SHA));
    expect((await fsp.readdir(dir)).sort()).toEqual([
      "config.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "model.safetensors.index.json",
      "tokenizer.json",
    ]);
  });
});

describe("hub errors", () => {
  it("offline with an empty cache names the missing files and the cache path", async () => {
    const err = await hubError(resolveModelDir("golden/gpt2", { offline: true }));
    expect(err.code).toBe("hub");
    expect(err.message).toBe(
      `${join(home, "hub", "models--golden--gpt2")}: offline, and the cache lacks config.json, tokenizer.json, ` +
        "model.safetensors (or model.safetensors.index.json and its shards) for revision main; " +
        "connect and unset HF_HUB_OFFLINE to download them",
    );
    expect(hub.requests).toEqual([]);
  });

  it("HF_HUB_OFFLINE=true counts as offline", async () => {
    process.env.HF_HUB_OFFLINE = "true";
    expect((await hubError(resolveModelDir("tiny/sharded"))).message).toContain("offline, and the cache lacks");
    expect(hub.requests).toEqual([]);
  });

  it("an unknown repo", async () => {
    const err = await hubError(resolveModelDir("nobody/nothing"));
    expect(err.message).toBe("nobody/nothing: looking up revision main: the hub answered 404 (check the model id and revision)");
  });

  it("a gated repo without a token", async () => {
    const err = await hubError(resolveModelDir("gated/model"));
    expect(err.message).toMatch(/^gated\/model: looking up revision main: the hub answered 401 \(.*set HF_TOKEN\)$/);
  });

  it("an unreachable hub", async () => {
    process.env.HF_ENDPOINT = "http://127.0.0.1:9";
    const err = await hubError(resolveModelDir("tiny/sharded"));
    expect(err.message).toMatch(/cannot reach http:\/\/127\.0\.0\.1:9 .*set HF_HUB_OFFLINE=1 to use only the cache/);
  });

  it("a cache that cannot be written", async () => {
    const blocker = join(home, "a-file");
    await fsp.writeFile(blocker, "");
    process.env.HF_HUB_CACHE = join(blocker, "hub");
    const err = await hubError(resolveModelDir("tiny/sharded"));
    expect(err.code).toBe("file");
    expect(err.message).toMatch(/cannot write to the Hugging Face cache \(ENOTDIR\)/);
  });

  it("a token that is not a hub token", async () => {
    process.env.HF_TOKEN = "secret";
    expect((await hubError(resolveModelDir("tiny/sharded"))).message).toContain("must start with hf_");
  });
});
