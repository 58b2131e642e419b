import { describe, expect, it } from "vitest";
import { Adafactor, AdamW, type Optimizer } from "../../src/train/optim.js";
import { learningRate } from "../../src/train/schedule.js";
import { SoftpromptError } from "../../src/util/errors.js";

function expectClose(actual: Float32Array, expected: number[], digits = 6): void {
  expect(actual.length).toBe(expected.length);
  expected.forEach((x, i) => expect(actual[i]).toBeCloseTo(x, digits));
}

function one(name: string, values: number[]): Map<string, Float32Array> {
  return new Map([[name, Float32Array.from(values)]]);
}

describe("AdamW (torch.optim.AdamW semantics)", () => {
  it("matches two steps worked out by hand", () => {
    // lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.01; p = [1, -2].
    const opt = new AdamW();
    const params = one("p", [1, -2]);

    // Step 1, g = [0.5, -1]:
    //   decay: p = p·(1 − 0.1·0.01) = [0.999, −1.998]
    //   m = 0.1·g = [0.05, −0.1];  v = 0.001·g² = [0.00025, 0.001]
    //   step size = 0.1 / (1 − 0.9) = 1;  √v / √(1 − 0.999) = [0.5, 1]
    //   p −= [0.05 / 0.5, −0.1 / 1] = [0.1, −0.1]  →  [0.899, −1.898]   (eps shifts it by ~1e-9)
    opt.step(params, one("p", [0.5, -1]), 0.1);
    expectClose(params.get("p")!, [0.899, -1.898]);

    // Step 2, g = [0.1, 0.2]:
    //   decay: p = [0.899·0.999, −1.898·0.999] = [0.898101, −1.896102]
    //   m = 0.9·[0.05, −0.1] + 0.1·[0.1, 0.2] = [0.055, −0.07]
    //   v = 0.999·[0.00025, 0.001] + 0.001·[0.01, 0.04] = [0.00025975, 0.001039]
    //   bias corrections: 1 − 0.9² = 0.19, 1 − 0.999² = 0.001999
    const stepSize = 0.1 / 0.19;
    const expected = [
      0.898101 - (stepSize * 0.055) / Math.sqrt(0.00025975 / 0.001999),
      -1.896102 - (stepSize * -0.07) / Math.sqrt(0.001039 / 0.001999),
    ];
    opt.step(params, one("p", [0.1, 0.2]), 0.1);
    expectClose(params.get("p")!, expected);
  });

  it("decays weights decoupled from the gradient: zero gradients shrink p by (1 − lr·wd) per step", () => {
    const opt = new AdamW({ weightDecay: 0.5 });
    const params = one("p", [2, -4]);
    for (let i = 0; i < 3; i++) opt.step(params, one("p", [0, 0]), 0.1);
    expectClose(params.get("p")!, [2 * 0.95 ** 3, -4 * 0.95 ** 3]);

    const noDecay = new AdamW({ weightDecay: 0 });
    const fixed = one("p", [2, -4]);
    noDecay.step(fixed, one("p", [0, 0]), 0.1);
    expect(Array.from(fixed.get("p")!)).toEqual([2, -4]);
  });

  it("rejects bad hyperparameters and mismatched gradients", () => {
    expect(() => new AdamW({ betas: [1, 0.999] })).toThrow(SoftpromptError);
    expect(() => new AdamW({ eps: -1 })).toThrow(SoftpromptError);
    const opt = new AdamW();
    expect(() => opt.step(one("p", [1]), one("q", [1]), 0.1)).toThrow(expect.objectContaining({ code: "usage" }));
    expect(() => opt.step(one("p", [1]), one("p", [1, 2]), 0.1)).toThrow(expect.objectContaining({ code: "shape" }));
    expect(() => opt.step(one("p", [1]), one("p", [1]), -0.1)).toThrow(expect.objectContaining({ code: "usage" }));
  });

  it("skips parameters that have no gradient this step, as torch does", () => {
    const opt = new AdamW();
    const params = new Map([
      ["a", Float32Array.of(1)],
      ["b", Float32Array.of(1)],
    ]);
    opt.step(params, one("a", [1]), 0.1);
    expect(params.get("b")![0]).toBe(1);
    expect(Object.keys(opt.state().params)).toEqual(["a"]);
  });
});

describe("Adafactor (HF transformers semantics, no parameter scaling, no relative step)", () => {
  const beta2 = (t: number) => 1 - t ** -0.8;

  it("1-D: matches two unfactored steps worked out by hand", () => {
    const opt = new Adafactor({ shapes: new Map([["p", [2]]]) });
    const params = one("p", [1, -2]);

    // Step 1: β2₁ = 1 − 1^−0.8 = 0, so v = g² = [0.25, 1]; u = g / √v = [1, −1];
    // RMS(u) = 1, no clipping; p −= 0.1·u  →  [0.9, −1.9].
    opt.step(params, one("p", [0.5, -1]), 0.1);
    expectClose(params.get("p")!, [0.9, -1.9]);

    // Step 2, g = [0.1, 0.2]: v = β2₂·[0.25, 1] + (1 − β2₂)·[0.01, 0.04]; RMS(u) ≈ 0.3 < 1.
    const b = beta2(2);
    const u = [0.1 / Math.sqrt(b * 0.25 + (1 - b) * 0.01), 0.2 / Math.sqrt(b * 1 + (1 - b) * 0.04)];
    expect(Math.hypot(u[0], u[1]) / Math.SQRT2).toBeLessThan(1);
    opt.step(params, one("p", [0.1, 0.2]), 0.1);
    expectClose(params.get("p")!, [0.9 - 0.1 * u[0], -1.9 - 0.1 * u[1]]);
  });

  it("clips the update to RMS clipThreshold", () => {
    const opt = new Adafactor({ shapes: new Map([["p", [2]]]) });
    const params = one("p", [0, 0]);
    opt.step(params, one("p", [0.5, -1]), 1); // v = [0.25, 1]
    // Step 2, g = [10, −20]: both gradients jump, so u ≈ ±1.32 and RMS(u) > 1 → u / RMS(u).
    const b = beta2(2);
    const u = [10 / Math.sqrt(b * 0.25 + (1 - b) * 100), -20 / Math.sqrt(b * 1 + (1 - b) * 400)];
    const rms = Math.hypot(u[0], u[1]) / Math.SQRT2;
    expect(rms).toBeGreaterThan(1);
    opt.step(params, one("p", [10, -20]), 1);
    expectClose(params.get("p")!, [-1 - u[0] / rms, 1 - u[1] / rms]);
  });

  it("2-D: factors the second moment into row and column means", () => {
    const opt = new Adafactor({ shapes: new Map([["p", [2, 3]]]) });
    const params = one("p", [0, 0, 0, 0, 0, 0]);
    // Step 1, g = [[1, 0, 1], [2, 2, 2]], β2₁ = 0:
    //   g² = [[1, 0, 1], [4, 4, 4]];  row means r = [2/3, 4];  column means c = [2.5, 2, 2.5];  mean(r) = 7/3
    //   V̂ = r ⊗ c / mean(r) = [[5/7, 4/7, 5/7], [30/7, 24/7, 30/7]]
    //   u = g / √V̂ = [[√(7/5), 0, √(7/5)], [2√(7/30), 2√(7/24), 2√(7/30)]]
    //   u² = [[1.4, 0, 1.4], [14/15, 7/6, 14/15]], mean 35/36 < 1: no clipping.
    const u1 = [
      Math.sqrt(7 / 5),
      0,
      Math.sqrt(7 / 5),
      2 * Math.sqrt(7 / 30),
      2 * Math.sqrt(7 / 24),
      2 * Math.sqrt(7 / 30),
    ];
    opt.step(params, one("p", [1, 0, 1, 2, 2, 2]), 0.1);
    expectClose(params.get("p")!, u1.map((x) => -0.1 * x));

    // Step 2, g = [[0, 1, 0], [1, 0, 1]]: g² row means [1/3, 2/3], column means [0.5, 0.5, 0.5].
    const b = beta2(2);
    const r = [b * (2 / 3) + (1 - b) / 3, b * 4 + (1 - b) * (2 / 3)];
    const c = [b * 2.5 + (1 - b) * 0.5, b * 2 + (1 - b) * 0.5, b * 2.5 + (1 - b) * 0.5];
    const rMean = (r[0] + r[1]) / 2;
    const g2 = [0, 1, 0, 1, 0, 1];
    const u2 = g2.map((g, i) => g / Math.sqrt((r[Math.floor(i / 3)] * c[i % 3]) / rMean));
    const rms = Math.sqrt(u2.reduce((s, x) => s + x * x, 0) / 6);
    const scale = 0.1 / Math.max(1, rms);
    opt.step(params, one("p", g2), 0.1);
    expectClose(
      params.get("p")!,
      u1.map((x, i) => -0.1 * x - scale * u2[i]),
    );
  });

  it("keeps a first moment of the scaled update when beta1 is set", () => {
    const opt = new Adafactor({ shapes: new Map([["p", [2]]]), beta1: 0.9 });
    const params = one("p", [1, -2]);
    // Step 1: u = 0.1·[1, −1]; m = 0.1·u = [0.01, −0.01]; p −= m.
    opt.step(params, one("p", [0.5, -1]), 0.1);
    expectClose(params.get("p")!, [0.99, -1.99]);
    // Step 2, same gradient: v = β2₂·g² + (1 − β2₂)·g² = g², so u = 0.1·[1, −1] again;
    // m = 0.9·[0.01, −0.01] + 0.1·[0.1, −0.1] = [0.019, −0.019].
    opt.step(params, one("p", [0.5, -1]), 0.1);
    expectClose(params.get("p")!, [0.99 - 0.019, -1.99 + 0.019]);
  });

  it("applies weight decay as p −= lr·wd·p alongside the update", () => {
    const opt = new Adafactor({ shapes: new Map([["p", [2]]]), weightDecay: 0.1 });
    const params = one("p", [1, -2]);
    // u = 0.1·[1, −1];  p = p·(1 − 0.1·0.1) − u = [0.99 − 0.1, −1.98 + 0.1].
    opt.step(params, one("p", [0.5, -1]), 0.1);
    expectClose(params.get("p")!, [0.89, -1.88]);
  });

  it("needs every parameter's shape, matching its size", () => {
    const opt = new Adafactor({ shapes: new Map([["p", [2, 2]]]) });
    expect(() => opt.step(one("q", [1]), one("q", [1]), 0.1)).toThrow(expect.objectContaining({ code: "usage" }));
    expect(() => opt.step(one("p", [1, 2, 3]), one("p", [1, 2, 3]), 0.1)).toThrow(
      expect.objectContaining({ code: "shape" }),
    );
    expect(() => new Adafactor({ shapes: new Map(), decayRate: 0.8 })).toThrow(SoftpromptError);
  });
});

describe("optimizer state", () => {
  const shapes = new Map([
    ["prompt", [4, 3]],
    ["bias", [3]],
  ]);
  const makers: [string, () => Optimizer][] = [
    ["AdamW", () => new AdamW({ weightDecay: 0.1 })],
    ["Adafactor", () => new Adafactor({ shapes, beta1: 0.9, weightDecay: 1e-5 })],
  ];

  // Deterministic pseudo-gradients that vary by step and element.
  function gradsAt(step: number): Map<string, Float32Array> {
    return new Map([
      ["prompt", Float32Array.from({ length: 12 }, (_, i) => Math.sin(step * 1.7 + i) * (1 + i / 5))],
      ["bias", Float32Array.from({ length: 3 }, (_, i) => Math.cos(step * 0.9 + i * 2))],
    ]);
  }

  function initialParams(): Map<string, Float32Array> {
    return new Map([
      ["prompt", Float32Array.from({ length: 12 }, (_, i) => (i - 6) / 10)],
      ["bias", Float32Array.of(0.5, -0.25, 0.125)],
    ]);
  }

  for (const [label, make] of makers) {
    it(`${label}: a JSON round trip of state() continues bit for bit`, () => {
      const original = make();
      const params = initialParams();
      for (let s = 0; s < 5; s++) original.step(params, gradsAt(s), 0.05);

      const resumed = make();
      resumed.load(JSON.parse(JSON.stringify(original.state())));
      const resumedParams = new Map([...params].map(([k, v]) => [k, v.slice()]));
      for (let s = 5; s < 10; s++) {
        original.step(params, gradsAt(s), 0.05);
        resumed.step(resumedParams, gradsAt(s), 0.05);
      }
      for (const [name, p] of params) {
        expect(Buffer.from(resumedParams.get(name)!.buffer)).toEqual(Buffer.from(p.buffer));
      }
      expect(resumed.state()).toEqual(original.state());
    });
  }

  it("refuses a state of the other kind or a malformed one", () => {
    const adamState = new AdamW().state();
    expect(() => new Adafactor({ shapes }).load(adamState)).toThrow(expect.objectContaining({ code: "config" }));
    expect(() => new AdamW().load({ kind: "adamw", params: { p: { step: 1, expAvg: "%%", expAvgSq: "" } } })).toThrow(
      expect.objectContaining({ code: "file" }),
    );
    expect(() => new AdamW().load({ kind: "adamw", params: { p: { step: -1, expAvg: "", expAvgSq: "" } } })).toThrow(
      expect.objectContaining({ code: "file" }),
    );
    expect(() => new AdamW().load("nonsense")).toThrow(expect.objectContaining({ code: "file" }));
  });

  it("refuses to continue with a state saved for a parameter of another size", () => {
    const opt = new AdamW();
    opt.step(one("p", [1, 2]), one("p", [1, 1]), 0.1);
    const resumed = new AdamW();
    resumed.load(opt.state());
    expect(() => resumed.step(one("p", [1, 2, 3]), one("p", [1, 1, 1]), 0.1)).toThrow(
      expect.objectContaining({ code: "shape" }),
    );
  });
});

describe("optimisation smoke test: minimise a quadratic", () => {
  const target = [0.3, -0.7, 1.2, 0.05, -0.4, 0.9];
  const loss = (p: Float32Array) => p.reduce((s, x, i) => s + (x - target[i]) ** 2, 0);
  const grad = (p: Float32Array) => one("w", Array.from(p, (x, i) => 2 * (x - target[i])));

  it("AdamW drives the loss near zero", () => {
    const opt = new AdamW({ weightDecay: 0 });
    const params = one("w", [0, 0, 0, 0, 0, 0]);
    const start = loss(params.get("w")!);
    for (let s = 0; s < 500; s++) {
      const lr = learningRate(s, { lr: 0.05, warmupSteps: 0, totalSteps: 500, decay: "linear" });
      opt.step(params, grad(params.get("w")!), lr);
    }
    expect(loss(params.get("w")!)).toBeLessThan(start * 1e-4);
  });

  it("Adafactor (factored, Lester et al.'s lr 0.3) drives the loss near zero", () => {
    const opt = new Adafactor({ shapes: new Map([["w", [2, 3]]]) });
    const params = one("w", [0, 0, 0, 0, 0, 0]);
    const start = loss(params.get("w")!);
    for (let s = 0; s < 500; s++) {
      const lr = learningRate(s, { lr: 0.3, warmupSteps: 0, totalSteps: 500, decay: "linear" });
      opt.step(params, grad(params.get("w")!), lr);
    }
    expect(loss(params.get("w")!)).toBeLessThan(start * 1e-4);
  });
});
