/**
 * Block-wise weight-only quantisation in the layout of ONNX Runtime's MatMulNBits: a weight W [N, K]
 * (N outputs, K inputs) is cut into blocks of `blockSize` along K; each block keeps a float scale and an
 * integer zero point, and each value a `bits`-bit code, W ≈ (code − zero) · scale. Codes are packed
 * low-first into bytes ([N, kBlocks, blockSize·bits/8]); 4-bit zero points are packed likewise per row.
 */
export type QuantBits = 4 | 8;

/** The block size of every quantised projection: the kernel's fast paths take 16…256; 32 keeps 4-bit error small. */
export const BLOCK_SIZE = 32;

export interface QuantizedMatrix {
  /** Outputs (rows of W) and inputs (the reduced axis). */
  n: number;
  k: number;
  bits: QuantBits;
  blockSize: number;
  /** [N, kBlocks, blockSize·bits/8] */
  packed: Uint8Array;
  /** [N·kBlocks] */
  scales: Float32Array;
  /** [N·⌈kBlocks·bits/8⌉] */
  zeroPoints: Uint8Array;
}

/** How W's host array is laid out: nn.Linear's [out, in] (row n is W[n], as every family holds its weights), or [in, out] (read transposed). */
export type StoredLayout = "out_in" | "in_out";

/**
 * Quantise W [N, K] per block with each block's own range, widened to hold 0 (so zero padding past K, and
 * exact zeros, stay exact): scale = (max − min) / (2^bits − 1), zero = round(−min / scale).
 */
export function quantizeMatrix(w: Float32Array, n: number, k: number, layout: StoredLayout, bits: QuantBits, blockSize = BLOCK_SIZE): QuantizedMatrix {
  const kBlocks = Math.ceil(k / blockSize);
  const blob = (blockSize * bits) / 8;
  const zeroRow = Math.ceil((kBlocks * bits) / 8);
  const qmax = 2 ** bits - 1;
  const packed = new Uint8Array(n * kBlocks * blob);
  const scales = new Float32Array(n * kBlocks);
  const zeroPoints = new Uint8Array(n * zeroRow);
  const at = layout === "out_in" ? (r: number, c: number) => w[r * k + c] : (r: number, c: number) => w[c * n + r];
  const block = new Float32Array(blockSize);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < kBlocks; b++) {
      let lo = 0;
      let hi = 0;
      for (let j = 0; j < blockSize; j++) {
        const c = b * blockSize + j;
        const v = c < k ? at(r, c) : 0;
        block[j] = v;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const scale = hi > lo ? (hi - lo) / qmax : 1;
      const zero = Math.min(qmax, Math.max(0, Math.round(-lo / scale)));
      const s = r * kBlocks + b;
      scales[s] = scale;
      putCode(zeroPoints, r * zeroRow * (8 / bits) + b, zero, bits);
      for (let j = 0; j < blockSize; j++) {
        const code = Math.min(qmax, Math.max(0, Math.round(block[j] / scale) + zero));
        putCode(packed, s * blockSize + j, code, bits);
      }
    }
  }
  return { n, k, bits, blockSize, packed, scales, zeroPoints };
}

/** W [N, K] back from its codes: (code − zero) · scale, row-major [out, in]. */
export function dequantizeMatrix(q: QuantizedMatrix): Float32Array {
  const { n, k, bits, blockSize } = q;
  const kBlocks = Math.ceil(k / blockSize);
  const zeroRow = Math.ceil((kBlocks * bits) / 8);
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < k; c++) {
      const b = Math.floor(c / blockSize);
      const s = r * kBlocks + b;
      const zero = getCode(q.zeroPoints, r * zeroRow * (8 / bits) + b, bits);
      out[r * k + c] = (getCode(q.packed, s * blockSize + (c % blockSize), bits) - zero) * q.scales[s];
    }
  }
  return out;
}

/** Bytes the quantised form takes (codes, scales, zero points). */
export function quantizedBytes(q: QuantizedMatrix): number {
  return q.packed.byteLength + q.scales.byteLength + q.zeroPoints.byteLength;
}

/** Write code number `i` of a packed array (8 bits: byte i; 4 bits: low nibble first). */
function putCode(bytes: Uint8Array, i: number, code: number, bits: QuantBits): void {
  if (bits === 8) bytes[i] = code;
  else bytes[i >> 1] |= (i & 1) === 0 ? code : code << 4;
}

function getCode(bytes: Uint8Array, i: number, bits: QuantBits): number {
  if (bits === 8) return bytes[i];
  return (i & 1) === 0 ? bytes[i >> 1] & 0xf : bytes[i >> 1] >> 4;
}
