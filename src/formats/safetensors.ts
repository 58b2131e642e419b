/**
 * The safetensors format (https://github.com/huggingface/safetensors), read and written by hand.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the data section.
 * The JSON maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the
 * data section), plus an optional "__metadata__" string map. Files come from strangers, so every number in
 * the header is checked before it is used to allocate or read anything.
 */
import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { fail, type ErrorPlace } from "../util/errors.js";
import { writeFileAtomic } from "../util/fs.js";

export type Dtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** The same cap as the Rust library: a larger header is hostile, not a model. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
  byteLength: number;
}

/** A tensor's entry with its offsets relative to the start of the data section. */
export interface TensorEntry extends TensorInfo {
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Where the data section starts in the file: 8 + header length. */
  dataStart: number;
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

export type TensorData = Float32Array | Uint8Array | BigInt64Array | Int32Array;

export interface TensorToWrite {
  dtype: Dtype;
  shape: number[];
  data: TensorData;
}

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** fs reads and writes take at most 2 GiB per call; big tensors go in chunks. */
const IO_CHUNK_BYTES = 1 << 30;

function isDtype(value: unknown): value is Dtype {
  return typeof value === "string" && Object.hasOwn(DTYPE_BYTES, value);
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/**
 * Validate a header. `bytes` holds the start of the file (at least 8 + header length bytes; the whole file
 * is fine), `fileSize` is the size of the whole file. Pure, so the fuzz test can hammer it.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const place: ErrorPlace = { file };
  if (fileSize < 8 || bytes.length < 8) {
    fail("safetensors", `file is ${fileSize} bytes, too short for the 8-byte header length`, place);
  }
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    fail("safetensors", `header length ${headerLength} is over the ${MAX_HEADER_BYTES}-byte limit`, place);
  }
  const n = Number(headerLength);
  if (n > fileSize - 8) {
    fail("safetensors", `header length ${n} runs past the end of the file (${fileSize} bytes): truncated?`, place);
  }
  if (bytes.length < 8 + n) {
    fail("safetensors", `expected ${8 + n} header bytes, got ${bytes.length}`, place);
  }
  const json = decodeHeaderJson(bytes.subarray(8, 8 + n), place);
  const dataSize = fileSize - 8 - n;

  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorEntry>();
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") metadata = parseMetadata(value, place);
    else tensors.set(name, parseEntry(value, dataSize, { file, tensor: name }));
  }
  checkNoOverlap(tensors, file);
  return { dataStart: 8 + n, tensors, metadata };
}

function decodeHeaderJson(bytes: Uint8Array, place: ErrorPlace): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    fail("safetensors", "header is not valid UTF-8", place);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    fail("safetensors", `header is not valid JSON (${(err as Error).message})`, place);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    fail("safetensors", "header must be a JSON object of tensor entries", place);
  }
  return json as Record<string, unknown>;
}

function parseMetadata(value: unknown, place: ErrorPlace): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail("safetensors", "__metadata__ must be an object of strings", place);
  }
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") fail("safetensors", `__metadata__["${key}"] must be a string, got ${typeof v}`, place);
  }
  return { ...(value as Record<string, string>) };
}

function parseEntry(value: unknown, dataSize: number, place: ErrorPlace): TensorEntry {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail("safetensors", "entry must be an object {dtype, shape, data_offsets}", place);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (!isDtype(dtype)) {
    fail("safetensors", `dtype ${JSON.stringify(dtype)} is not one of ${Object.keys(DTYPE_BYTES).join(", ")}`, place);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail("safetensors", `shape ${JSON.stringify(shape)} must be an array of non-negative integers`, place);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    fail("safetensors", `data_offsets ${JSON.stringify(offsets)} must be two integers [begin, end], begin <= end`, place);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataSize) {
    fail("safetensors", `data_offsets [${begin}, ${end}] run past the data section (${dataSize} bytes)`, place);
  }
  // A float product of huge dimensions cannot round down to a byte count that fits in the file; a zero
  // dimension is checked first so that 0 * Infinity cannot turn into NaN.
  const dims = shape as number[];
  const expected = dims.includes(0) ? 0 : elementCount(dims) * DTYPE_BYTES[dtype];
  if (expected !== end - begin) {
    const needs = Number.isSafeInteger(expected) ? `${expected} bytes` : "more than 2^53 bytes";
    const holds = `data_offsets [${begin}, ${end}] hold ${end - begin}`;
    fail("safetensors", `${dtype}${JSON.stringify(dims)} needs ${needs}, but ${holds}`, place);
  }
  return { dtype, shape: [...dims], byteLength: end - begin, begin, end };
}

function checkNoOverlap(tensors: Map<string, TensorEntry>, file: string): void {
  // Empty tensors occupy no bytes, so they cannot overlap anything.
  const ranges = [...tensors].filter(([, t]) => t.end > t.begin).sort(([, a], [, b]) => a.begin - b.begin);
  for (let i = 1; i < ranges.length; i++) {
    const [prevName, prev] = ranges[i - 1];
    const [name, cur] = ranges[i];
    if (cur.begin < prev.end) {
      fail(
        "safetensors",
        `bytes [${cur.begin}, ${cur.end}] overlap tensor "${prevName}" at [${prev.begin}, ${prev.end}]`,
        { file, tensor: name },
      );
    }
  }
}

/** A safetensors file opened for reading; tensors are read one at a time, on demand. */
export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  private readonly handle: FileHandle;
  private readonly header: SafetensorsHeader;

  private constructor(path: string, handle: FileHandle, header: SafetensorsHeader) {
    this.path = path;
    this.handle = handle;
    this.header = header;
    this.metadata = header.metadata;
  }

  static async open(path: string): Promise<SafetensorsFile> {
    let handle: FileHandle;
    try {
      handle = await fsp.open(path, "r");
    } catch (err) {
      fail("file", `cannot open safetensors file (${(err as NodeJS.ErrnoException).code ?? err})`, { file: path }, err);
    }
    try {
      const { size } = await handle.stat();
      const first = await readExactly(handle, Math.min(8, size), 0, path);
      // Read the header only when its declared length is sane; parse re-checks it and names what is wrong.
      const declared = size >= 8 ? Number(new DataView(first.buffer).getBigUint64(0, true)) : 0;
      const sane = declared <= Math.min(MAX_HEADER_BYTES, size - 8);
      const prefix = sane ? await readExactly(handle, 8 + declared, 0, path) : first;
      return new SafetensorsFile(path, handle, parseSafetensorsHeader(prefix, size, path));
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  tensorNames(): string[] {
    return [...this.header.tensors.keys()];
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const { dtype, shape, byteLength } = this.entry(name);
    return { dtype, shape: [...shape], byteLength };
  }

  /** The tensor's raw little-endian bytes, read from its own byte range only. */
  async read(name: string): Promise<Uint8Array> {
    const entry = this.entry(name);
    return readExactly(this.handle, entry.byteLength, this.header.dataStart + entry.begin, this.path, name);
  }

  /**
   * The tensor as float32: F32 is read straight into the result (into `scratch` when given and large enough: a
   * caller that only reads it before the next read saves allocating and faulting in fresh memory), F16/BF16/F64
   * are converted.
   */
  async readFloat32(name: string, scratch?: Float32Array): Promise<Float32Array> {
    const entry = this.entry(name);
    const position = this.header.dataStart + entry.begin;
    const count = entry.byteLength / DTYPE_BYTES[entry.dtype];
    if (entry.dtype === "F32") {
      const out = scratch !== undefined && scratch.length >= count ? scratch.subarray(0, count) : new Float32Array(count);
      const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
      await readInto(this.handle, bytes, position, this.path, name);
      if (!HOST_IS_LITTLE_ENDIAN) swapBytes(bytes, 4);
      return out;
    }
    if (entry.dtype !== "F16" && entry.dtype !== "BF16" && entry.dtype !== "F64") {
      fail("safetensors", `dtype ${entry.dtype} is not a float type, cannot read as float32`, {
        file: this.path,
        tensor: name,
      });
    }
    const bytes = await readExactly(this.handle, entry.byteLength, position, this.path, name);
    if (!HOST_IS_LITTLE_ENDIAN) swapBytes(bytes, DTYPE_BYTES[entry.dtype]);
    if (entry.dtype === "F64") return Float32Array.from(new Float64Array(bytes.buffer));
    const halves = new Uint16Array(bytes.buffer);
    return entry.dtype === "F16" ? float16ToFloat32(halves) : bfloat16ToFloat32(halves);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }

  private entry(name: string): TensorEntry {
    const entry = this.header.tensors.get(name);
    if (entry === undefined) {
      fail("safetensors", `no such tensor; the file holds ${this.header.tensors.size} tensors`, {
        file: this.path,
        tensor: name,
      });
    }
    return entry;
  }
}

async function readExactly(
  handle: FileHandle,
  length: number,
  position: number,
  file: string,
  tensor?: string,
): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  await readInto(handle, bytes, position, file, tensor);
  return bytes;
}

async function readInto(
  handle: FileHandle,
  target: Uint8Array,
  position: number,
  file: string,
  tensor?: string,
): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const length = Math.min(IO_CHUNK_BYTES, target.length - done);
    const { bytesRead } = await handle.read(target, done, length, position + done);
    if (bytesRead === 0) {
      fail("safetensors", `file ended after ${position + done} bytes while reading ${target.length} bytes`, {
        file,
        tensor,
      });
    }
    done += bytesRead;
  }
}

/** Reverse each `width`-byte group in place: safetensors is little-endian whatever the host is. */
function swapBytes(bytes: Uint8Array, width: number): void {
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

let float16Table: Float32Array | undefined;

/** IEEE half -> float32 through a 65536-entry table (256 KiB, built on first use). */
export function float16ToFloat32(halves: Uint16Array): Float32Array {
  float16Table ??= buildFloat16Table();
  const table = float16Table;
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = table[halves[i]];
  return out;
}

function buildFloat16Table(): Float32Array {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    if (exponent === 0) table[h] = sign * fraction * 2 ** -24; // zero and subnormals
    else if (exponent === 31) table[h] = fraction === 0 ? sign * Infinity : NaN;
    else table[h] = sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
  }
  return table;
}

/** bfloat16 is the top half of a float32, so widening is a shift. */
export function bfloat16ToFloat32(halves: Uint16Array): Float32Array {
  const out = new Float32Array(halves.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < halves.length; i++) bits[i] = halves[i] << 16;
  return out;
}

/** float32 -> IEEE half, rounding to nearest even (for writing F16 tensors). */
export function float32ToFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) out[i] = halfBits(bits[i]);
  return out;
}

function halfBits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const exponent = (f >>> 23) & 0xff;
  const mantissa = f & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0); // Inf, NaN
  const e = exponent - 127 + 15;
  if (e >= 31) return sign | 0x7c00; // too large: Inf
  if (e <= 0) {
    if (e < -10) return sign; // too small: signed zero
    // Subnormal: shift the mantissa (with its implicit 1) into place, rounding to nearest even.
    const m = mantissa | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let result = m >>> shift;
    if (rest > half || (rest === half && (result & 1) === 1)) result++;
    return sign | result;
  }
  let result = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // Rounding may carry into the exponent, which is still the correctly rounded value (up to Inf).
  if (rest > 0x1000 || (rest === 0x1000 && (result & 1) === 1)) result++;
  return sign | result;
}

/** float32 -> bfloat16, rounding to nearest even like PyTorch. */
export function float32ToBfloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    const f = bits[i];
    if ((f & 0x7fffffff) > 0x7f800000) out[i] = (f >>> 16) | 0x40; // keep NaN a (quiet) NaN
    else out[i] = (f + 0x7fff + ((f >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Which typed array may carry each dtype; Uint8Array (raw little-endian bytes) may carry any. */
function dataFits(dtype: Dtype, data: TensorData): boolean {
  if (data instanceof Uint8Array) return true;
  if (data instanceof Float32Array) return dtype === "F32";
  if (data instanceof Int32Array) return dtype === "I32";
  return dtype === "I64";
}

/**
 * Write tensors as a safetensors file, atomically. Like the Rust library, tensors are laid out by
 * descending alignment then name (so every tensor is aligned to its element size), and the header is
 * padded with spaces to a multiple of 8 bytes.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Promise<void> {
  const names = Object.keys(tensors).sort((a, b) => {
    const bySize = DTYPE_BYTES[tensors[b].dtype] - DTYPE_BYTES[tensors[a].dtype];
    return bySize !== 0 ? bySize : a < b ? -1 : a > b ? 1 : 0;
  });
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const { dtype, shape, data } = tensors[name];
    const place = { file: path, tensor: name };
    if (name === "__metadata__") fail("safetensors", "a tensor cannot be named __metadata__", place);
    if (!isDtype(dtype)) fail("safetensors", `unknown dtype ${JSON.stringify(dtype)}`, place);
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail("safetensors", `shape ${JSON.stringify(shape)} must be non-negative integers`, place);
    }
    if (!dataFits(dtype, data)) {
      fail("safetensors", `dtype ${dtype} cannot be written from a ${data.constructor.name}`, place);
    }
    const byteLength = elementCount(shape) * DTYPE_BYTES[dtype];
    if (data.byteLength !== byteLength) {
      fail("safetensors", `${dtype}${JSON.stringify(shape)} needs ${byteLength} bytes, data has ${data.byteLength}`, place);
    }
    header[name] = { dtype, shape, data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }

  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLength = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength); // space padding keeps the JSON valid
  let position = 8 + headerLength;
  for (const name of names) {
    const { dtype, data } = tensors[name];
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    out.set(bytes, position);
    if (!HOST_IS_LITTLE_ENDIAN && !(data instanceof Uint8Array)) {
      swapBytes(out.subarray(position, position + bytes.length), DTYPE_BYTES[dtype]);
    }
    position += bytes.length;
  }
  await writeFileAtomic(path, out);
}
