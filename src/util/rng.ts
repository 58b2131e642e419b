import { fail } from "./errors.js";

/**
 * The whole state of an `Rng`: four xoshiro128** words and the cached Box-Muller spare.
 * Plain numbers only, so `JSON.stringify` / `JSON.parse` round-trips it exactly
 * (JSON writes doubles in their shortest exact form) and `--resume` continues bit for bit.
 */
export interface RngState {
  words: [number, number, number, number];
  spare: number | null;
}

const TWO_POW_32 = 2 ** 32;

/**
 * Seeded PRNG: xoshiro128** (Blackman & Vigna 2018, https://prng.di.unimi.it/xoshiro128starstar.c)
 * seeded through splitmix32, as the xoshiro authors recommend, so that nearby seeds give unrelated streams.
 */
export class Rng {
  private words: Uint32Array;
  private spare: number | null = null;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) fail("usage", `seed must be a safe integer, got ${seed}`, { field: "seed" });
    // Split the seed into its low and high 32 bits and expand each through its own splitmix32 stream,
    // so distinct seeds give distinct states. Two consecutive splitmix32 outputs are never both zero
    // (its mixer is a bijection), so the state is never the all-zero state xoshiro cannot leave.
    const low = splitmix32(seed >>> 0);
    const high = splitmix32(Math.floor(seed / TWO_POW_32) >>> 0);
    this.words = Uint32Array.of(low(), low(), high(), high());
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.words;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** A uniform float in [0, 1) with 32 random bits. */
  next(): number {
    return this.nextUint32() / TWO_POW_32;
  }

  /** A uniform integer in 0..n-1, without modulo bias (rejects the incomplete last block). */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) {
      fail("usage", `int(n) needs an integer n in 1..2^32, got ${n}`, { op: "Rng.int" });
    }
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    let x = this.nextUint32();
    while (x >= limit) x = this.nextUint32();
    return x % n;
  }

  /** A standard normal sample. Box-Muller makes two at a time; the second is kept for the next call. */
  normal(): number {
    if (this.spare !== null) {
      const cached = this.spare;
      this.spare = null;
      return cached;
    }
    const u1 = 1 - this.next(); // (0, 1], so the log is finite
    const u2 = this.next();
    const radius = Math.sqrt(-2 * Math.log(u1));
    const angle = 2 * Math.PI * u2;
    this.spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  /** Fisher-Yates shuffle in place; returns the same array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const held = items[i];
      items[i] = items[j];
      items[j] = held;
    }
    return items;
  }

  state(): RngState {
    const [a, b, c, d] = this.words;
    return { words: [a, b, c, d], spare: this.spare };
  }

  /** Rebuild an `Rng` from `state()`, e.g. after `JSON.parse` of a checkpoint. */
  static fromState(state: unknown): Rng {
    const s = state as Partial<RngState> | null;
    const words = s?.words;
    if (
      !Array.isArray(words) ||
      words.length !== 4 ||
      !words.every((w) => Number.isInteger(w) && w >= 0 && w < TWO_POW_32) ||
      words.every((w) => w === 0)
    ) {
      fail("file", "rng state needs four uint32 words, not all zero", { field: "rng.words" });
    }
    const spare = s?.spare;
    if (spare !== null && !(typeof spare === "number" && Number.isFinite(spare))) {
      fail("file", "rng state spare must be a finite number or null", { field: "rng.spare" });
    }
    const rng = new Rng(0);
    rng.words = Uint32Array.from(words);
    rng.spare = spare;
    return rng;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** splitmix32 (Wellons' lowbias32 finaliser over a golden-ratio Weyl sequence): a stream of uint32s. */
function splitmix32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  };
}
