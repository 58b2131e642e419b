/**
 * Running compiled graphs with ONNX Runtime. A Program is one ONNX model with named inputs and
 * outputs; sessions are cached by the graph's serialised bytes, so rebuilding the same graph reuses
 * the session. Feeds are passed to ORT without copying (weights fed as inputs are shared by all programs).
 */
import { createHash } from "node:crypto";
import { readdir, stat } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import * as ort from "onnxruntime-node";
import { fail } from "../util/errors.js";
import { type AnyTypedArray, type DType, type Value, formatShape } from "../graph/ir.js";
import { type IoSpec, toOnnx } from "../graph/onnx.js";

/** Host data for one input or output: a typed array with its dims. */
export interface Tensor<A extends AnyTypedArray = AnyTypedArray> {
  data: A;
  dims: readonly number[];
}

export type Feeds = Record<string, Tensor>;

const ORT_TYPE: Record<DType, ort.Tensor.Type> = {
  float32: "float32",
  float64: "float64",
  int64: "int64",
  int32: "int32",
  uint8: "uint8",
  bool: "bool",
};

export interface ProgramOptions {
  /** Threads for one op; defaults to every core. */
  threads?: number;
  /**
   * Keep freed buffers in ORT's arena for the next run (the default): a training step's large activations are reused
   * instead of mapped afresh. Off, buffers go back to the system allocator when freed: for inference programs, whose
   * buffers are small, that is as fast and holds less (GPT-2-small generate: peak RSS 20 MB lower, steps unchanged).
   */
  memoryArena?: boolean;
  /** Record ORT's profile (every op of every run) until `program.endProfiling()`; such a program gets a session of its own. */
  enableProfiling?: boolean;
  /** Where the profile goes: `${profileFilePrefix}_<date>.json`; default "onnxruntime_profile" in the working folder. */
  profileFilePrefix?: string;
}

/**
 * Sessions by graph: compiling a graph that is already loaded reuses its session. Held weakly once
 * loaded, so a session (and the memory arena it grew) goes when no Program uses it any more.
 */
const loading = new Map<string, Promise<ort.InferenceSession>>();
const loaded = new Map<string, WeakRef<ort.InferenceSession>>();
const forget = new FinalizationRegistry<string>((key) => {
  if (loaded.get(key)?.deref() === undefined) loaded.delete(key);
});

async function cachedSession(key: string, create: () => Promise<ort.InferenceSession>): Promise<ort.InferenceSession> {
  const live = loaded.get(key)?.deref();
  if (live !== undefined) return live;
  let pending = loading.get(key);
  if (pending === undefined) {
    pending = create();
    loading.set(key, pending);
  }
  try {
    const session = await pending;
    if (loaded.get(key)?.deref() !== session) {
      loaded.set(key, new WeakRef(session));
      forget.register(session, key);
    }
    return session;
  } finally {
    loading.delete(key);
  }
}

export class Program {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly inputs: readonly IoSpec[],
    readonly outputs: readonly IoSpec[],
    private readonly profilePrefix?: string,
  ) {}

  /** Compile the graph computing `outputs` (keyed by output name) into a runnable program. */
  static async compile(outputs: Record<string, Value>, options: ProgramOptions = {}): Promise<Program> {
    const model = toOnnx(outputs);
    const key = createHash("sha256").update(model.bytes).update(`threads=${options.threads ?? "all"} arena=${options.memoryArena ?? true}`).digest("hex");
    const session = options.enableProfiling ? await createSession(model.bytes, options) : await cachedSession(key, () => createSession(model.bytes, options));
    return new Program(session, model.inputs, model.outputs, options.enableProfiling ? (options.profileFilePrefix ?? DEFAULT_PROFILE_PREFIX) : undefined);
  }

  /** Stop profiling and return the profile's path (ORT names the file: the prefix, then the session's start time). */
  async endProfiling(): Promise<string> {
    if (this.profilePrefix === undefined) return fail("usage", "this program was compiled without enableProfiling", { field: "enableProfiling" });
    this.session.endProfiling();
    const dir = dirname(resolve(this.profilePrefix));
    const stem = `${basename(this.profilePrefix)}_`;
    const files = (await readdir(dir)).filter((f) => f.startsWith(stem) && f.endsWith(".json")).map((f) => join(dir, f));
    if (files.length === 0) return fail("runtime", `ONNX Runtime wrote no profile ${stem}*.json in ${dir}`);
    const mtimes = await Promise.all(files.map(async (f) => (await stat(f)).mtimeMs));
    return files[mtimes.indexOf(Math.max(...mtimes))];
  }

  /** Run with every input fed; returns every output as host data. */
  async run(feeds: Feeds): Promise<Record<string, Tensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const spec of this.inputs) {
      const feed = feeds[spec.name];
      if (feed === undefined) fail("usage", `program input "${spec.name}" ${formatShape(spec.shape)} was not fed`);
      ortFeeds[spec.name] = toOrt(spec, feed);
    }
    let results: ort.InferenceSession.ReturnType;
    try {
      results = await this.session.run(ortFeeds);
    } catch (err) {
      return fail("runtime", `ONNX Runtime failed: ${(err as Error).message}`, {}, err);
    }
    const out: Record<string, Tensor> = {};
    for (const spec of this.outputs) {
      const t = results[spec.name];
      out[spec.name] = { data: t.data as AnyTypedArray, dims: t.dims };
    }
    return out;
  }
}

const DEFAULT_PROFILE_PREFIX = "onnxruntime_profile";

async function createSession(bytes: Uint8Array, { threads, memoryArena = true, enableProfiling, profileFilePrefix }: ProgramOptions): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(bytes, {
      executionProviders: ["cpu"],
      graphOptimizationLevel: "all",
      intraOpNumThreads: threads ?? availableParallelism(),
      interOpNumThreads: 1,
      executionMode: "sequential",
      // The arena reuses freed blocks across runs; memory patterns would pre-plan one block per input
      // shape on top of it (measured: 3.8 GB peak vs 2.3 GB for a GPT-2-small train step, same speed).
      enableMemPattern: false,
      enableCpuMemArena: memoryArena,
      // ORT's pool threads spin between the ops of a run, and stop when it ends: a sleeping thread woken for each
      // product joins it late (GPT-2-small decode step 6-10% slower with no spinning), while a thread still spinning
      // after a run takes the core that JavaScript (the server's event loop, its clients, the sampler) and other
      // programs' runs need (two programs run in turn: each about 2x slower).
      extra: { "session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1" },
      ...(enableProfiling ? { enableProfiling, profileFilePrefix: profileFilePrefix ?? DEFAULT_PROFILE_PREFIX } : {}),
    });
  } catch (err) {
    return fail("runtime", `ONNX Runtime could not load the compiled graph: ${(err as Error).message}`, {}, err);
  }
}

/**
 * ORT's view of host data, made once per array and shape: frozen weights are fed to every run of
 * every program, and wrapping never copies.
 */
const wrapped = new WeakMap<AnyTypedArray, { key: string; tensor: ort.Tensor }>();

function toOrt(spec: IoSpec, feed: Tensor): ort.Tensor {
  const ok =
    spec.shape.length === feed.dims.length && spec.shape.every((d, i) => typeof d !== "number" || d === feed.dims[i]);
  if (!ok) fail("shape", `input "${spec.name}" must be ${formatShape(spec.shape)}, got ${formatShape(feed.dims)}`, { op: "run" });
  const type = ORT_TYPE[spec.dtype];
  const key = `${type} ${feed.dims.join(",")}`;
  const hit = wrapped.get(feed.data);
  if (hit !== undefined && hit.key === key) return hit.tensor;
  const tensor = new ort.Tensor(type, feed.data as never, feed.dims);
  wrapped.set(feed.data, { key, tensor });
  return tensor;
}
