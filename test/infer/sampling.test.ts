import { describe, expect, it } from "vitest";
import {
  applyRepetitionPenalty,
  greedy,
  sampleToken,
  softmax,
  tokenLogprob,
  type SamplingOptions,
} from "../../src/infer/sampling.js";
import { Rng } from "../../src/util/rng.js";

const logitsOf = (probs: number[]) => Float32Array.from(probs, Math.log);

/** Empirical token frequencies over many seeded draws. */
function frequencies(logits: Float32Array, options: Omit<SamplingOptions, "rng">, draws = 20_000): number[] {
  const rng = new Rng(2024);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampleToken(logits, { ...options, rng })]++;
  return counts.map((c) => c / draws);
}

function expectFrequencies(actual: number[], expected: number[]): void {
  // 20k draws: a standard error of at most 0.0036, so 0.015 is over 4 of them.
  expected.forEach((p, i) => expect(Math.abs(actual[i] - p)).toBeLessThan(0.015));
}

describe("softmax", () => {
  it("is stable for huge logits and tiny temperatures, and gives −Infinity zero probability", () => {
    expect(Array.from(softmax(Float32Array.of(3e38, 3e38, -Infinity)))).toEqual([0.5, 0.5, 0]);
    expect(Array.from(softmax(Float32Array.of(1, 1.001), 1e-300))).toEqual([0, 1]);
    const probs = softmax(logitsOf([0.5, 0.3, 0.2]));
    [0.5, 0.3, 0.2].forEach((p, i) => expect(probs[i]).toBeCloseTo(p, 6));
  });
});

describe("greedy", () => {
  it("returns the argmax, the first one on ties", () => {
    expect(greedy(Float32Array.of(0.1, 2, -1, 2))).toBe(1);
    expect(greedy(Float32Array.of(-Infinity, -3))).toBe(1);
  });

  it("refuses NaN, +Infinity, an all −Infinity row and an empty row", () => {
    expect(() => greedy(Float32Array.of(1, NaN))).toThrow(expect.objectContaining({ code: "nonfinite" }));
    expect(() => greedy(Float32Array.of(1, Infinity))).toThrow(expect.objectContaining({ code: "nonfinite" }));
    // Wherever the bad logit sits (before or after the largest), the error names it.
    expect(() => greedy(Float32Array.of(NaN, 1))).toThrow(/logit 0 is NaN/);
    expect(() => greedy(Float32Array.of(3, 1, NaN))).toThrow(/logit 2 is NaN/);
    expect(() => greedy(Float32Array.of(3, Infinity, NaN))).toThrow(/logit 1 is Infinity/);
    expect(() => greedy(Float32Array.of(-Infinity))).toThrow(expect.objectContaining({ code: "nonfinite" }));
    expect(() => greedy(new Float32Array(0))).toThrow(expect.objectContaining({ code: "usage" }));
  });
});

describe("applyRepetitionPenalty (HF RepetitionPenaltyLogitsProcessor)", () => {
  it("divides positive and multiplies negative logits of seen ids, once each, without touching the input", () => {
    const logits = Float32Array.of(2, -2, 0.5, 3, 0);
    const out = applyRepetitionPenalty(logits, [0, 1, 1, 1, 4], 2);
    expect(Array.from(out)).toEqual([1, -4, 0.5, 3, 0]);
    expect(Array.from(logits)).toEqual([2, -2, 0.5, 3, 0]);
  });

  it("rejects a penalty that is not positive and ids outside the vocabulary", () => {
    for (const bad of [0, -1, NaN]) {
      expect(() => applyRepetitionPenalty(Float32Array.of(1), [0], bad)).toThrow(
        expect.objectContaining({ code: "usage" }),
      );
    }
    expect(() => applyRepetitionPenalty(Float32Array.of(1), [1], 1.2)).toThrow(
      expect.objectContaining({ code: "usage" }),
    );
  });
});

describe("sampleToken", () => {
  const probs = [0.5, 0.3, 0.2];
  const logits = logitsOf(probs);

  it("is greedy without a temperature or at temperature 0, and needs no rng then", () => {
    expect(sampleToken(Float32Array.of(0, 3, 1))).toBe(1);
    expect(sampleToken(Float32Array.of(0, 3, 1), { temperature: 0, topK: 2, topP: 0.5 })).toBe(1);
  });

  it("samples from softmax(logits) at temperature 1", () => {
    expectFrequencies(frequencies(logits, { temperature: 1 }), probs);
  });

  it("divides logits by the temperature", () => {
    // T = 2 samples ∝ p^(1/2).
    const roots = probs.map(Math.sqrt);
    const sum = roots.reduce((a, b) => a + b);
    expectFrequencies(
      frequencies(logits, { temperature: 2 }),
      roots.map((r) => r / sum),
    );
  });

  it("is effectively greedy at a tiny temperature, even for close logits", () => {
    expect(frequencies(Float32Array.of(1, 1.001, 0.999), { temperature: 1e-6 }, 200)).toEqual([0, 1, 0]);
  });

  it("top-k keeps the k most likely tokens (and all of them when k exceeds the vocabulary)", () => {
    expectFrequencies(frequencies(logits, { temperature: 1, topK: 2 }), [0.625, 0.375, 0]);
    expectFrequencies(frequencies(logits, { temperature: 1, topK: 1 }), [1, 0, 0]);
    expectFrequencies(frequencies(logits, { temperature: 1, topK: 50 }), probs);
  });

  it("top-p keeps the smallest set reaching p, and at least one token", () => {
    expectFrequencies(frequencies(logits, { temperature: 1, topP: 0.7 }), [0.625, 0.375, 0]);
    expectFrequencies(frequencies(logits, { temperature: 1, topP: 0.4 }), [1, 0, 0]);
    expectFrequencies(frequencies(logits, { temperature: 1, topP: 1 }), probs);
  });

  it("top-p stops as soon as the kept probability reaches p exactly (HF removes cumulative ≤ 1 − p)", () => {
    // Four equal logits: exact probabilities 0.25 each; two tokens reach p = 0.5. Ties go to the lower id.
    expectFrequencies(frequencies(new Float32Array(4), { temperature: 1, topP: 0.5 }), [0.5, 0.5, 0, 0]);
  });

  it("applies temperature before top-p, as HF does", () => {
    // At T = 100 the probabilities are nearly uniform, so p = 0.75 needs all three tokens;
    // at T = 1 the first two already reach 0.8.
    expect(frequencies(logits, { temperature: 100, topP: 0.75 })[2]).toBeGreaterThan(0.3);
    expect(frequencies(logits, { temperature: 1, topP: 0.75 })[2]).toBe(0);
  });

  it("combines top-k and top-p, and never picks a −Infinity logit", () => {
    const masked = Float32Array.of(Math.log(0.5), -Infinity, Math.log(0.3), Math.log(0.15), Math.log(0.05));
    // top-k 3 → {0.5, 0.3, 0.15} renormalised to 0.526, 0.316, 0.158; top-p 0.8 → {0, 2}.
    expectFrequencies(frequencies(masked, { temperature: 1, topK: 3, topP: 0.8 }), [0.625, 0, 0.375, 0, 0]);
  });

  it("is reproducible for a seed", () => {
    const draw = () => {
      const rng = new Rng(9);
      return Array.from({ length: 50 }, () => sampleToken(logits, { temperature: 0.8, topP: 0.9, rng }));
    };
    expect(draw()).toEqual(draw());
  });

  it("rejects bad options", () => {
    const rng = new Rng(1);
    const bad: SamplingOptions[] = [
      { temperature: -1, rng },
      { temperature: NaN, rng },
      { temperature: Infinity, rng },
      { temperature: 1, topP: 0, rng },
      { temperature: 1, topP: 1.5, rng },
      { temperature: 1, topP: -0.1, rng },
      { temperature: 1, topK: -1, rng },
      { temperature: 1, topK: 1.5, rng },
      { temperature: 1 }, // no rng
    ];
    for (const options of bad) {
      expect(() => sampleToken(logits, options)).toThrow(expect.objectContaining({ code: "usage" }));
    }
  });
});

describe("tokenLogprob", () => {
  it("is log-softmax at the token, with the most likely tokens first (ties: lower id first)", () => {
    const logits = logitsOf([0.1, 0.4, 0.1, 0.3, 0.1]);
    const lp = tokenLogprob(logits, 2, 3);
    expect(lp.token).toBe(2);
    expect(lp.logprob).toBeCloseTo(Math.log(0.1), 6);
    expect(lp.top.map((t) => t.token)).toEqual([1, 3, 0]);
    expect(lp.top[0].logprob).toBeCloseTo(Math.log(0.4), 6);
    expect(tokenLogprob(logits, 1, 0).top).toEqual([]);
    expect(tokenLogprob(logits, 1, 9).top.map((t) => t.token)).toEqual([1, 3, 0, 2, 4]);
  });

  it("does not overflow on large logits and gives −Infinity to masked tokens", () => {
    const lp = tokenLogprob(Float32Array.from([1000, 1000, -Infinity]), 2, 2);
    expect(lp.logprob).toBe(-Infinity);
    expect(lp.top.map((t) => [t.token, t.logprob])).toEqual([[0, -Math.LN2], [1, -Math.LN2]].map(([i, v]) => [i, expect.closeTo(v, 6)]));
  });
});
