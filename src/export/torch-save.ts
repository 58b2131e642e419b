/**
 * `torch.save(tensor)` for one contiguous CPU tensor, byte for byte in the layout PyTorch 2.x writes:
 * a zip (stored entries, data 64-byte aligned) holding `archive/data.pkl` — a protocol-2 pickle that
 * calls `torch._utils._rebuild_tensor_v2` on a persistent storage id — and the storage's raw
 * little-endian bytes in `archive/data/0`. `torch.load(f, weights_only=True)` accepts it: the pickle
 * names only the globals its safe unpickler allows (`_rebuild_tensor_v2`, `FloatStorage` or
 * `BFloat16Storage`, `collections.OrderedDict`).
 * Reference: torch/serialization.py (`_save`, `_load`), torch/_utils.py (`_rebuild_tensor_v2`).
 */
import { fail } from "../util/errors.js";
import { float32ToBfloat16 } from "../formats/safetensors.js";
import { storedZip } from "./stored-zip.js";

export type TorchDtype = "float32" | "bfloat16";

/** The storage class torch's pickle names for each dtype. */
const STORAGE_CLASS: Record<TorchDtype, string> = { float32: "FloatStorage", bfloat16: "BFloat16Storage" };

/** A row-major float32 tensor; `dtype` is what is written (bfloat16 rounds to nearest even, as `.to(torch.bfloat16)`). */
export function torchSave(data: Float32Array, dims: readonly number[], dtype: TorchDtype = "float32"): Uint8Array {
  const numel = dims.reduce((a, b) => a * b, 1);
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) fail("usage", `tensor dims must be non-negative integers, got [${dims.join(", ")}]`, { field: "dims" });
  if (numel !== data.length) fail("usage", `dims [${dims.join(", ")}] hold ${numel} values but the data has ${data.length}`, { field: "dims" });
  const archive = "archive";
  return storedZip([
    { name: `${archive}/data.pkl`, data: tensorPickle(dims, dtype) },
    { name: `${archive}/.format_version`, data: ascii("1") },
    { name: `${archive}/.storage_alignment`, data: ascii("64") },
    { name: `${archive}/byteorder`, data: ascii("little") },
    { name: `${archive}/data/0`, data: dtype === "float32" ? littleEndianFloat32(data) : bfloat16Bytes(data) },
    { name: `${archive}/version`, data: ascii("3\n") },
  ]);
}

// --- the pickle: _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks)

const PROTO = 0x80, GLOBAL = 0x63, MARK = 0x28, TUPLE = 0x74, TUPLE1 = 0x85, TUPLE2 = 0x86, EMPTY_TUPLE = 0x29;
const BINUNICODE = 0x58, BININT1 = 0x4b, BININT2 = 0x4d, BININT = 0x4a, BINPERSID = 0x51, REDUCE = 0x52;
const NEWFALSE = 0x89, STOP = 0x2e;

function tensorPickle(dims: readonly number[], dtype: TorchDtype): Uint8Array {
  const p = new PickleWriter();
  const numel = dims.reduce((a, b) => a * b, 1);
  const strides = dims.map((_, i) => dims.slice(i + 1).reduce((a, b) => a * b, 1)); // contiguous, row-major
  p.op(PROTO, 2);
  p.global("torch._utils", "_rebuild_tensor_v2");
  p.op(MARK);
  // The persistent id torch's unpickler resolves to the storage in data/<key>: ("storage", class, key, location, numel).
  p.op(MARK);
  p.str("storage");
  p.global("torch", STORAGE_CLASS[dtype]);
  p.str("0");
  p.str("cpu");
  p.int(numel);
  p.op(TUPLE);
  p.op(BINPERSID);
  p.int(0); // storage offset
  p.tuple(dims);
  p.tuple(strides);
  p.op(NEWFALSE); // requires_grad
  p.global("collections", "OrderedDict"); // backward hooks: OrderedDict()
  p.op(EMPTY_TUPLE);
  p.op(REDUCE);
  p.op(TUPLE);
  p.op(REDUCE);
  p.op(STOP);
  return p.bytes();
}

class PickleWriter {
  private readonly out: number[] = [];

  op(...bytes: number[]): void {
    this.out.push(...bytes);
  }

  global(module: string, name: string): void {
    this.op(GLOBAL, ...ascii(`${module}\n${name}\n`));
  }

  str(s: string): void {
    const utf8 = new TextEncoder().encode(s);
    this.op(BINUNICODE, ...uint32(utf8.length), ...utf8);
  }

  /** The shortest of pickle's integer opcodes that holds n (BININT is a signed 32-bit integer). */
  int(n: number): void {
    if (n >= 0 && n < 0x100) this.op(BININT1, n);
    else if (n >= 0 && n < 0x10000) this.op(BININT2, n & 0xff, n >>> 8);
    else if (n >= -0x80000000 && n < 0x80000000) this.op(BININT, ...uint32(n));
    else fail("usage", `${n} is too large for this writer (over 2³¹ − 1 elements)`);
  }

  tuple(items: readonly number[]): void {
    if (items.length === 0) return this.op(EMPTY_TUPLE);
    if (items.length > 2) this.op(MARK);
    for (const n of items) this.int(n);
    this.op(items.length === 1 ? TUPLE1 : items.length === 2 ? TUPLE2 : TUPLE);
  }

  bytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

function uint32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

function ascii(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/** The values' bytes in little-endian order, whatever the host's. */
function littleEndianFloat32(x: Float32Array): Uint8Array {
  const out = new Uint8Array(x.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < x.length; i++) view.setFloat32(i * 4, x[i], true);
  return out;
}

function bfloat16Bytes(x: Float32Array): Uint8Array {
  const halves = float32ToBfloat16(x);
  const out = new Uint8Array(halves.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < halves.length; i++) view.setUint16(i * 2, halves[i], true);
  return out;
}
