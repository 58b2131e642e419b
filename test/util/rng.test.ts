import { describe, expect, it } from "vitest";
import { SoftpromptError } from "../../src/util/errors.js";
import { Rng } from "../../src/util/rng.js";

function draws(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.nextUint32());
}

describe("Rng", () => {
  it("is xoshiro128**: matches the reference C implementation from state {1, 2, 3, 4}", () => {
    // Output of https://prng.di.unimi.it/xoshiro128starstar.c next() with s = {1, 2, 3, 4}.
    const rng = Rng.fromState({ words: [1, 2, 3, 4], spare: null });
    expect(draws(rng, 6)).toEqual([11520, 0, 5927040, 70819200, 2031721883, 1637235492]);
  });

  it("is deterministic for a seed and differs between seeds", () => {
    expect(draws(new Rng(42), 8)).toEqual(draws(new Rng(42), 8));
    const seeds = [0, 1, 2, 42, -1, 2 ** 32, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER];
    const firsts = seeds.map((s) => draws(new Rng(s), 2).join(","));
    expect(new Set(firsts).size).toBe(seeds.length);
  });

  it("rejects seeds that are not safe integers", () => {
    for (const bad of [0.5, NaN, Infinity, 2 ** 53]) {
      expect(() => new Rng(bad)).toThrow(SoftpromptError);
    }
  });

  it("continues identically after a JSON round trip of its state, including a cached normal", () => {
    const rng = new Rng(7);
    draws(rng, 5);
    rng.normal(); // leaves the Box-Muller spare in the state
    const saved = JSON.stringify(rng.state());
    expect(JSON.parse(saved).spare).not.toBeNull();
    const restored = Rng.fromState(JSON.parse(saved));
    const sequence = (r: Rng) => [r.normal(), r.normal(), r.next(), r.int(10), r.nextUint32()];
    expect(sequence(restored)).toEqual(sequence(rng));
  });

  it("rejects malformed states", () => {
    const bad: unknown[] = [
      null,
      {},
      { words: [1, 2, 3], spare: null },
      { words: [0, 0, 0, 0], spare: null },
      { words: [1, 2, 3, 2 ** 32], spare: null },
      { words: [1, 2, 3, 4], spare: "x" },
    ];
    for (const state of bad) {
      expect(() => Rng.fromState(state)).toThrow(expect.objectContaining({ code: "file" }));
    }
  });

  it("next() is in [0, 1) and int(n) in 0..n-1, roughly uniform", () => {
    const rng = new Rng(1);
    const counts = new Array(5).fill(0);
    let outside = 0;
    for (let i = 0; i < 50_000; i++) {
      const x = rng.next();
      if (!(x >= 0 && x < 1)) outside++;
      counts[rng.int(5)]++;
    }
    expect(outside).toBe(0);
    for (const c of counts) expect(Math.abs(c / 50_000 - 0.2)).toBeLessThan(0.01);
    expect(() => rng.int(0)).toThrow(SoftpromptError);
    expect(() => rng.int(2.5)).toThrow(SoftpromptError);
  });

  it("normal() has mean about 0 and variance about 1", () => {
    const rng = new Rng(123);
    const n = 100_000;
    let sum = 0;
    let sumSquares = 0;
    for (let i = 0; i < n; i++) {
      const x = rng.normal();
      sum += x;
      sumSquares += x * x;
    }
    const mean = sum / n;
    expect(Math.abs(mean)).toBeLessThan(0.015); // ~5 standard errors
    expect(Math.abs(sumSquares / n - mean * mean - 1)).toBeLessThan(0.03);
  });

  it("shuffle() permutes in place, deterministically", () => {
    const items = Array.from({ length: 20 }, (_, i) => i);
    const shuffled = new Rng(5).shuffle(items);
    expect(shuffled).toBe(items);
    expect([...items].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(items).not.toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(new Rng(5).shuffle(Array.from({ length: 20 }, (_, i) => i))).toEqual(items);
  });
});
