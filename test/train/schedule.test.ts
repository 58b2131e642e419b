import { describe, expect, it } from "vitest";
import { learningRate, type ScheduleOptions } from "../../src/train/schedule.js";

const base = { lr: 1, warmupSteps: 10, totalSteps: 100 };
const at = (step: number, options: Omit<ScheduleOptions, "lr"> & { lr?: number }) =>
  learningRate(step, { lr: 1, ...options });

describe("learningRate (HF schedules, step = number of updates already taken)", () => {
  it("warms up linearly from 0 for every decay, so the first update has lr 0", () => {
    for (const decay of ["constant", "linear", "cosine"] as const) {
      expect(at(0, { ...base, decay })).toBe(0);
      expect(at(5, { ...base, decay })).toBeCloseTo(0.5, 12);
      expect(at(10, { ...base, decay })).toBeCloseTo(1, 12);
    }
  });

  it("constant stays at lr after warmup (get_constant_schedule_with_warmup)", () => {
    expect(at(50, { ...base, decay: "constant" })).toBe(1);
    expect(at(100, { ...base, decay: "constant" })).toBe(1);
    expect(at(0, { lr: 0.3, warmupSteps: 0, totalSteps: 5, decay: "constant" })).toBe(0.3);
  });

  it("linear falls to 0 at totalSteps (get_linear_schedule_with_warmup)", () => {
    // (100 − step) / (100 − 10)
    expect(at(55, { ...base, decay: "linear" })).toBeCloseTo(0.5, 12);
    expect(at(91, { ...base, decay: "linear" })).toBeCloseTo(9 / 90, 12);
    expect(at(100, { ...base, decay: "linear" })).toBe(0);
    expect(at(0, { lr: 2, warmupSteps: 0, totalSteps: 4, decay: "linear" })).toBe(2);
    expect(at(3, { lr: 2, warmupSteps: 0, totalSteps: 4, decay: "linear" })).toBeCloseTo(0.5, 12);
  });

  it("cosine follows half a cosine to 0 (get_cosine_schedule_with_warmup, num_cycles 0.5)", () => {
    expect(at(30, { ...base, decay: "cosine" })).toBeCloseTo(0.5 * (1 + Math.cos((Math.PI * 20) / 90)), 12);
    expect(at(55, { ...base, decay: "cosine" })).toBeCloseTo(0.5, 12);
    expect(at(100, { ...base, decay: "cosine" })).toBeCloseTo(0, 12);
  });

  it("minLr floors the decay (get_cosine_with_min_lr_schedule_with_warmup)", () => {
    const options = { lr: 2, warmupSteps: 10, totalSteps: 100, minLr: 0.2 };
    expect(learningRate(100, { ...options, decay: "cosine" })).toBeCloseTo(0.2, 12);
    expect(learningRate(55, { ...options, decay: "cosine" })).toBeCloseTo(2 * (0.5 * 0.9 + 0.1), 12);
    expect(learningRate(100, { ...options, decay: "linear" })).toBeCloseTo(0.2, 12);
    expect(learningRate(5, { ...options, decay: "linear" })).toBeCloseTo(1, 12); // warmup ignores the floor
  });

  it("matches HF when warmup spans the whole run", () => {
    expect(at(10, { lr: 1, warmupSteps: 10, totalSteps: 10, decay: "linear" })).toBe(0);
    expect(at(10, { lr: 1, warmupSteps: 10, totalSteps: 10, decay: "cosine" })).toBe(1);
  });

  it("rejects invalid settings and steps outside 0..totalSteps", () => {
    const bad: [number, ScheduleOptions][] = [
      [-1, { ...base, decay: "linear" }],
      [101, { ...base, decay: "cosine" }],
      [1.5, { ...base, decay: "linear" }],
      [0, { ...base, totalSteps: 0, warmupSteps: 0, decay: "linear" }],
      [0, { ...base, warmupSteps: 101, decay: "linear" }],
      [0, { ...base, lr: -1, decay: "linear" }],
      [0, { ...base, minLr: 2, decay: "cosine" }],
      [0, { ...base, decay: "exponential" as "linear" }],
    ];
    for (const [step, options] of bad) {
      expect(() => learningRate(step, options)).toThrow(expect.objectContaining({ code: "usage" }));
    }
  });
});
