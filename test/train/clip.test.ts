import { describe, expect, it } from "vitest";
import { assertFinite, clipGradNorm, globalNorm } from "../../src/train/clip.js";
import { SoftpromptError } from "../../src/util/errors.js";

function grads(): Map<string, Float32Array> {
  return new Map([
    ["a", Float32Array.of(3, 0)],
    ["b", Float32Array.of(0, -4)],
  ]);
}

describe("clipGradNorm (torch.nn.utils.clip_grad_norm_)", () => {
  it("returns the norm over all tensors and scales by maxNorm / (norm + 1e-6)", () => {
    const g = grads();
    expect(clipGradNorm(g, 1)).toBe(5);
    const coef = 1 / (5 + 1e-6);
    expect(g.get("a")![0]).toBeCloseTo(3 * coef, 7);
    expect(g.get("b")![1]).toBeCloseTo(-4 * coef, 7);
    expect(Math.hypot(...g.get("a")!, ...g.get("b")!)).toBeCloseTo(1, 6);
  });

  it("leaves gradients below maxNorm alone", () => {
    const g = grads();
    expect(clipGradNorm(g, 10)).toBe(5);
    expect(Array.from(g.get("a")!)).toEqual([3, 0]);
    expect(Array.from(g.get("b")!)).toEqual([0, -4]);
  });

  it("like torch, scales slightly when the norm equals maxNorm (coef = 5 / 5.000001 < 1)", () => {
    const g = grads();
    clipGradNorm(g, 5);
    expect(g.get("a")![0]).toBe(Math.fround(3 * (5 / (5 + 1e-6))));
  });

  it("handles an empty set and leaves non-finite gradients for assertFinite to name", () => {
    expect(clipGradNorm(new Map(), 1)).toBe(0);
    const g = new Map([["a", Float32Array.of(NaN, 1)]]);
    expect(clipGradNorm(g, 1)).toBeNaN();
    expect(g.get("a")![1]).toBe(1);
  });

  it("rejects a maxNorm that is not a positive finite number", () => {
    for (const bad of [0, -1, NaN, Infinity]) {
      expect(() => clipGradNorm(grads(), bad)).toThrow(expect.objectContaining({ code: "usage" }));
    }
  });
});

describe("assertFinite", () => {
  it("passes finite losses and gradients", () => {
    expect(() => assertFinite(0.25, 3)).not.toThrow();
    expect(() => assertFinite(grads(), 3)).not.toThrow();
  });

  it("names the step for a non-finite loss", () => {
    const error = catchError(() => assertFinite(NaN, 17));
    expect(error.code).toBe("nonfinite");
    expect(error.place.tensor).toBe("loss");
    expect(error.message).toMatch(/step 17/);
  });

  it("names the step, the tensor and the index for a non-finite gradient", () => {
    const g = grads();
    g.set("prompt", Float32Array.of(0, 1, -Infinity));
    const error = catchError(() => assertFinite(g, 4));
    expect(error.code).toBe("nonfinite");
    expect(error.place.tensor).toBe("prompt");
    expect(error.message).toMatch(/prompt/);
    expect(error.message).toMatch(/-Infinity at index 2 at step 4/);
  });
});

function catchError(action: () => void): SoftpromptError {
  try {
    action();
  } catch (error) {
    if (error instanceof SoftpromptError) return error;
    throw error;
  }
  throw new Error("expected a SoftpromptError");
}

describe("globalNorm (the norm the trainer logs without clipping)", () => {
  it("takes millions of values (a LoRA's gradients) without overflowing the stack", () => {
    const big = new Float32Array(2_000_000).fill(0.5);
    expect(globalNorm(new Map([["big", big], ...grads()]))).toBeCloseTo(Math.sqrt(2_000_000 * 0.25 + 25), 6);
  });
});
