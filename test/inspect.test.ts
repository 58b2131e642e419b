import { describe, expect, it } from "vitest";
import { inspectPrompt, promptSimilarity } from "../src/peft/inspect.js";

// A vocabulary of 4 tokens in 2-D: the axes and their negatives.
const embeddings = { data: Float32Array.of(1, 0, 0, 1, -1, 0, 0, -2), shape: [4, 2] };
const names = ["east", "north", "west", "south"];

describe("inspectPrompt", () => {
  it("ranks tokens by cosine similarity and reports norms relative to the vocabulary", () => {
    const [r] = inspectPrompt(Float32Array.of(0.1, 3), embeddings, (id) => names[id], 2);
    expect(r.nearest.map((t) => t.token)).toEqual(["north", "east"]);
    expect(r.nearest[0].cosine).toBeCloseTo(3 / Math.hypot(0.1, 3), 6);
    expect(r.norm).toBeCloseTo(Math.hypot(0.1, 3), 6);
    expect(r.relativeNorm).toBeCloseTo(Math.hypot(0.1, 3) / 1.25, 6);
  });
  it("rejects a prompt of the wrong width", () => {
    expect(() => inspectPrompt(Float32Array.of(1, 2, 3), embeddings, () => "")).toThrow(/2-wide/);
  });
});

describe("promptSimilarity", () => {
  it("is 1 for identical prompts and -1 for opposite ones", () => {
    const a = Float32Array.of(1, 2, 3, 4);
    expect(promptSimilarity(a, a, 2).flat).toBeCloseTo(1, 6);
    expect(promptSimilarity(a, a.map((x) => -x), 2).flat).toBeCloseTo(-1, 6);
  });
  it("matches vectors regardless of order and length", () => {
    const a = Float32Array.of(1, 0, 0, 1);
    const b = Float32Array.of(0, 5, 7, 0, -1, -1);
    const s = promptSimilarity(a, b, 2);
    expect(s.flat).toBeNull();
    expect(s.meanBestMatch).toBeCloseTo(1, 6);
  });
});
