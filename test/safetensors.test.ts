import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { existsSync, promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  DTYPE_BYTES,
  SafetensorsFile,
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  parseSafetensorsHeader,
  writeSafetensors,
  type Dtype,
} from "../src/formats/safetensors.js";
import { SoftpromptError } from "../src/util/errors.js";
import { errorOf } from "./helpers/errors.js";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const shared = resolve(repoRoot, "../shared");
const goldenGpt2 = join(shared, "golden/gpt2/model/model.safetensors");

let dir: string;
beforeAll(async () => {
  dir = await fsp.mkdtemp(join(tmpdir(), "softprompt-safetensors-"));
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

/** Bytes of a safetensors file with the given header (object or raw JSON text) and data section. */
function fileBytes(header: unknown, data: Uint8Array = new Uint8Array(0), declaredLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, declaredLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function parse(bytes: Uint8Array) {
  return parseSafetensorsHeader(bytes, bytes.length, "bad.safetensors");
}

describe("writeSafetensors / SafetensorsFile", () => {
  it("round-trips every dtype, metadata, scalars and empty tensors", async () => {
    const path = join(dir, "roundtrip.safetensors");
    const f32 = Float32Array.from([1, -2.5, 3.25, 0, 1e-8, 65504]);
    const f64 = Float64Array.from([Math.PI, -1e300, 0.5]);
    await writeSafetensors(
      path,
      {
        "b.f32": { dtype: "F32", shape: [2, 3], data: f32 },
        "a.f16": { dtype: "F16", shape: [6], data: new Uint8Array(float32ToFloat16(f32).buffer) },
        "c.bf16": { dtype: "BF16", shape: [3, 2], data: new Uint8Array(float32ToBfloat16(f32).buffer) },
        "d.f64": { dtype: "F64", shape: [3], data: new Uint8Array(f64.buffer) },
        "e.i64": { dtype: "I64", shape: [2], data: BigInt64Array.from([-1n, 2n ** 40n]) },
        "f.i32": { dtype: "I32", shape: [1, 1], data: Int32Array.from([-7]) },
        "g.bool": { dtype: "BOOL", shape: [3], data: Uint8Array.from([1, 0, 1]) },
        "h.scalar": { dtype: "F32", shape: [], data: Float32Array.from([42]) },
        "i.empty": { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
      },
      { format: "pt", note: "héllo" },
    );

    const file = await SafetensorsFile.open(path);
    try {
      expect(file.metadata).toEqual({ format: "pt", note: "héllo" });
      expect(file.tensorNames().sort()).toEqual(
        ["a.f16", "b.f32", "c.bf16", "d.f64", "e.i64", "f.i32", "g.bool", "h.scalar", "i.empty"].sort(),
      );
      expect(file.has("b.f32") && !file.has("nope")).toBe(true);
      expect(file.info("b.f32")).toEqual({ dtype: "F32", shape: [2, 3], byteLength: 24 });
      expect(await file.readFloat32("b.f32")).toEqual(f32);
      // Into a caller's scratch buffer when it is large enough (the view shares its memory); else a fresh array.
      const scratch = new Float32Array(10).fill(-1);
      const inScratch = await file.readFloat32("b.f32", scratch);
      expect(inScratch).toEqual(f32);
      expect(inScratch.buffer).toBe(scratch.buffer);
      expect(Array.from(scratch.subarray(6))).toEqual([-1, -1, -1, -1]);
      const small = new Float32Array(2);
      const fresh = await file.readFloat32("b.f32", small);
      expect(fresh).toEqual(f32);
      expect(fresh.buffer).not.toBe(small.buffer);
      expect(await file.readFloat32("a.f16")).toEqual(Float32Array.from([1, -2.5, 3.25, 0, 0, 65504]));
      expect(Array.from(await file.readFloat32("c.bf16"))).toEqual([1, -2.5, 3.25, 0, 1.0011717677116394e-8, 65536]);
      expect(await file.readFloat32("d.f64")).toEqual(Float32Array.from(f64));
      expect(Array.from(new BigInt64Array((await file.read("e.i64")).buffer))).toEqual([-1n, 2n ** 40n]);
      expect(Array.from(new Int32Array((await file.read("f.i32")).buffer))).toEqual([-7]);
      expect(Array.from(await file.read("g.bool"))).toEqual([1, 0, 1]);
      expect(Array.from(await file.readFloat32("h.scalar"))).toEqual([42]);
      expect((await file.readFloat32("i.empty")).length).toBe(0);
      await expect(file.readFloat32("e.i64")).rejects.toThrow(/tensor "e.i64": dtype I64 is not a float type/);
      await expect(file.read("nope")).rejects.toMatchObject({ code: "safetensors", place: { tensor: "nope" } });
    } finally {
      await file.close();
    }
  });

  it("pads the header to 8 bytes and aligns every tensor to its element size", async () => {
    const path = join(dir, "aligned.safetensors");
    await writeSafetensors(path, {
      z: { dtype: "U8", shape: [3], data: Uint8Array.from([1, 2, 3]) },
      y: { dtype: "F16", shape: [1], data: new Uint8Array(2) },
      x: { dtype: "I64", shape: [1], data: BigInt64Array.from([5n]) },
      w: { dtype: "F32", shape: [1], data: Float32Array.from([1]) },
    });
    const bytes = new Uint8Array(await fsp.readFile(path));
    const header = parse(bytes);
    expect(header.dataStart % 8).toBe(0);
    for (const t of header.tensors.values()) expect((header.dataStart + t.begin) % DTYPE_BYTES[t.dtype]).toBe(0);
    // Largest alignment first, then by name, like the Rust library.
    expect([...header.tensors].sort(([, a], [, b]) => a.begin - b.begin).map(([n]) => n)).toEqual(["x", "w", "y", "z"]);
  });

  it("rejects tensors whose data does not match dtype and shape", async () => {
    const path = join(dir, "never.safetensors");
    await expect(
      writeSafetensors(path, { t: { dtype: "F32", shape: [3], data: new Float32Array(2) } }),
    ).rejects.toThrow(/tensor "t": F32\[3\] needs 12 bytes, data has 8/);
    await expect(
      writeSafetensors(path, { t: { dtype: "I64", shape: [2], data: new Float32Array(4) } }),
    ).rejects.toThrow(/dtype I64 cannot be written from a Float32Array/);
    expect(existsSync(path)).toBe(false);
  });
});

describe("float16 / bfloat16 conversion", () => {
  it("float16 -> float32 -> float16 is the identity on every non-NaN half", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = float32ToFloat16(float16ToFloat32(all));
    const isHalfNaN = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    const wrong = [...all].filter((h) => (isHalfNaN(h) ? !isHalfNaN(back[h]) : back[h] !== h));
    expect(wrong).toEqual([]);
  });

  it("rounds to nearest even and saturates to infinity", () => {
    const halves = float32ToFloat16(Float32Array.from([1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520, 65519, 2 ** -25, 2 ** -24]));
    expect(Array.from(float16ToFloat32(halves))).toEqual([1, 1 + 2 ** -9, Infinity, 65504, 0, 2 ** -24]);
    const brain = float32ToBfloat16(Float32Array.from([1 + 2 ** -8, 1 + 3 * 2 ** -8, NaN, -Infinity]));
    expect(Array.from(bfloat16ToFloat32(brain))).toEqual([1, 1 + 2 ** -6, NaN, -Infinity]);
  });
});

describe.skipIf(!existsSync(goldenGpt2))("golden gpt2 checkpoint", () => {
  it("reads every tensor exactly as the bytes say", async () => {
    const raw = await fsp.readFile(goldenGpt2);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const dataStart = 8 + Number(view.getBigUint64(0, true));
    const header = JSON.parse(raw.subarray(8, dataStart).toString("utf8"));

    const file = await SafetensorsFile.open(goldenGpt2);
    try {
      expect(file.metadata).toEqual({ format: "pt" });
      expect(file.tensorNames()).toHaveLength(28);
      expect(file.info("transformer.wte.weight")).toEqual({ dtype: "F32", shape: [512, 64], byteLength: 512 * 64 * 4 });
      for (const name of file.tensorNames()) {
        const [begin, end] = header[name].data_offsets;
        const values = await file.readFloat32(name);
        expect(values.length).toBe((end - begin) / 4);
        for (const i of [0, values.length >> 1, values.length - 1]) {
          expect(values[i]).toBe(view.getFloat32(dataStart + begin + 4 * i, true));
        }
      }
    } finally {
      await file.close();
    }
  });
});

describe("hostile headers each get their own clear error", () => {
  const entry = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });

  const cases: [string, Uint8Array, RegExp, string?][] = [
    ["a file shorter than 8 bytes", Uint8Array.from([1, 2, 3]), /too short for the 8-byte header length/],
    ["an oversized header length", fileBytes({}, undefined, 2n ** 40n), /header length 1099511627776 is over the 100000000-byte limit/],
    ["a header length past the end of the file", fileBytes({}, undefined, 1000n), /header length 1000 runs past the end of the file/],
    ["invalid UTF-8", fileBytes('{"ab": 1}').map((b, i) => (i === 10 ? 0xff : b)), /not valid UTF-8/],
    ["bad JSON", fileBytes('{"t": {"dtype": "F32",'), /header is not valid JSON/],
    ["a JSON array", fileBytes("[1, 2]"), /header must be a JSON object/],
    ["a non-object entry", fileBytes({ t: 3 }), /entry must be an object/, "t"],
    ["a bad dtype", fileBytes({ t: entry("F8", [1], [0, 1]) }, new Uint8Array(1)), /dtype "F8" is not one of F64, F32/, "t"],
    ["a negative dimension", fileBytes({ t: entry("U8", [-1], [0, 0]) }), /shape \[-1\] must be an array of non-negative integers/, "t"],
    ["a fractional offset", fileBytes({ t: entry("U8", [1], [0, 1.5]) }, new Uint8Array(2)), /data_offsets \[0,1.5\] must be two integers/, "t"],
    ["begin after end", fileBytes({ t: entry("U8", [0], [4, 2]) }, new Uint8Array(4)), /begin <= end/, "t"],
    ["offsets past the end", fileBytes({ t: entry("F32", [4], [0, 16]) }, new Uint8Array(12)), /data_offsets \[0, 16\] run past the data section \(12 bytes\)/, "t"],
    ["a wrong byte count", fileBytes({ t: entry("F32", [4], [0, 12]) }, new Uint8Array(12)), /F32\[4\] needs 16 bytes, but data_offsets \[0, 12\] hold 12/, "t"],
    ["a shape too big for the file", fileBytes({ t: entry("F32", [2 ** 30, 2 ** 30], [0, 4]) }, new Uint8Array(4)), /F32\[1073741824,1073741824\] needs more than 2\^53 bytes/, "t"],
    [
      "overlapping tensors",
      fileBytes({ a: entry("F32", [2], [0, 8]), b: entry("F32", [2], [4, 12]) }, new Uint8Array(12)),
      /bytes \[4, 12\] overlap tensor "a" at \[0, 8\]/,
      "b",
    ],
    ["non-string metadata", fileBytes({ __metadata__: { format: 1 } }), /__metadata__\["format"\] must be a string/],
  ];

  it.each(cases)("%s", (_, bytes, message, tensor) => {
    const err = errorOf(() => parse(bytes));
    expect(err.code).toBe("safetensors");
    expect(err.message).toMatch(message);
    expect(err.message).toContain("bad.safetensors");
    expect(err.place).toEqual({ file: "bad.safetensors", ...(tensor ? { tensor } : {}) });
  });

  it("a truncated file on disk fails at open, naming the file", async () => {
    const path = join(dir, "truncated.safetensors");
    await writeSafetensors(path, { w: { dtype: "F32", shape: [8], data: new Float32Array(8) } });
    const bytes = await fsp.readFile(path);
    await fsp.writeFile(path, bytes.subarray(0, bytes.length - 5));
    await expect(SafetensorsFile.open(path)).rejects.toThrow(
      new RegExp(`${path}, tensor "w": data_offsets \\[0, 32\\] run past the data section \\(27 bytes\\)`),
    );
  });

  it("a missing file is a file error", async () => {
    await expect(SafetensorsFile.open(join(dir, "absent.safetensors"))).rejects.toMatchObject({ code: "file" });
  });
});

describe("fuzz: hostile input only ever raises SoftpromptError and never reads outside the file", () => {
  const dtypes = Object.keys(DTYPE_BYTES) as Dtype[];
  // Numbers near the edges that tend to break arithmetic.
  const edgy = fc.oneof(
    fc.integer({ min: -3, max: 70 }),
    fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e300, -0, 0.5, NaN),
    fc.string({ maxLength: 3 }),
    fc.constant(null),
  );
  const entryArb = fc.record({
    dtype: fc.oneof(fc.constantFrom(...dtypes), fc.string({ maxLength: 4 })),
    shape: fc.oneof(fc.array(edgy, { maxLength: 3 }), edgy),
    data_offsets: fc.oneof(fc.tuple(edgy, edgy), fc.array(edgy, { maxLength: 3 }), edgy),
  });
  const headerArb = fc.dictionary(
    fc.oneof(fc.string({ maxLength: 6 }), fc.constant("__metadata__"), fc.constant("__proto__")),
    fc.oneof(entryArb, edgy, fc.dictionary(fc.string({ maxLength: 3 }), fc.oneof(fc.string(), edgy))),
    { maxKeys: 5 },
  );
  const lengthArb = fc.oneof(
    fc.constant(undefined),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    fc.bigInt({ min: 0n, max: 300n }),
  );
  const fileArb = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc
      .tuple(headerArb, fc.uint8Array({ maxLength: 128 }), lengthArb)
      .map(([header, data, length]) => fileBytes(header, data, length)),
    // Byte-level damage to a valid file: flips and truncation.
    fc
      .tuple(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.option(fc.nat(), { nil: undefined }),
      )
      .map(([flips, cut]) => {
        const bytes = fileBytes(
          { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "BF16", shape: [2, 1], data_offsets: [8, 12] } },
          new Uint8Array(12).fill(7),
        );
        for (const [at, value] of flips) bytes[at % bytes.length] = value;
        return cut === undefined ? bytes : bytes.subarray(0, cut % (bytes.length + 1));
      }),
  );

  function checkParsed(bytes: Uint8Array) {
    try {
      const header = parse(bytes);
      for (const t of header.tensors.values()) {
        expect(header.dataStart + t.end).toBeLessThanOrEqual(bytes.length);
        expect(t.end - t.begin).toBe(t.byteLength);
      }
    } catch (err) {
      if (!(err instanceof SoftpromptError) || err.code !== "safetensors") throw err;
    }
  }

  it("parseSafetensorsHeader", () => {
    fc.assert(fc.property(fileArb, checkParsed), { numRuns: 3000 });
  });

  it("SafetensorsFile reads every tensor it accepted without running off the file", async () => {
    const path = join(dir, "fuzz.safetensors");
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(fileArb, async (bytes) => {
        await fsp.writeFile(path, bytes);
        let file: SafetensorsFile;
        try {
          file = await SafetensorsFile.open(path);
        } catch (err) {
          if (err instanceof SoftpromptError && err.code === "safetensors") return;
          throw err;
        }
        accepted++;
        try {
          // Any read past the end would throw "file ended": reads of accepted tensors must all succeed.
          for (const name of file.tensorNames()) {
            expect((await file.read(name)).length).toBe(file.info(name).byteLength);
            if (["F32", "F16", "BF16", "F64"].includes(file.info(name).dtype)) await file.readFloat32(name);
          }
        } finally {
          await file.close();
        }
      }),
      { numRuns: 300 },
    );
    expect(accepted).toBeGreaterThan(0);
  });
});
