// inspect on a prompt started from a hard prompt (--init-text): each vector's starting token, how far
// it moved from that token's embedding, and what it is nearest to now. On the tiny model, a prompt
// started as "copy: 1 2" and trained on reverse ends nearest "reverse:" in its last vector.
import { describe, expect, it } from "vitest";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { inspect, train } from "../src/workflows.js";
import { inspectPrompt, textStartIds, withStarts } from "../src/peft/inspect.js";
import { inspectView } from "../src/report/views.js";

const MODEL = fileURLToPath(new URL("../examples/models/tiny-tasks", import.meta.url));
const data = (split: string) => fileURLToPath(new URL(`../examples/data/reverse.${split}.jsonl`, import.meta.url));

describe("inspect: refinement from a hard prompt", () => {
  it("a vector still at its starting token has moved 0 and is nearest to it", () => {
    const embeddings = { shape: [3, 2], data: Float32Array.of(1, 0, 0, 1, -1, 0) };
    const prompt = Float32Array.of(0, 1, 0.5, 0.5);
    const ids = textStartIds([1, 0], 2);
    const [same, moved] = withStarts(inspectPrompt(prompt, embeddings, String, 1), prompt, embeddings, ids, String);
    expect(same.start).toEqual({ id: 1, token: "1", distance: 0, relativeDistance: 0, cosine: 1, stillNearest: true });
    expect(moved.start!.distance).toBeCloseTo(Math.SQRT1_2, 6);
    expect(moved.start!.cosine).toBeCloseTo(Math.SQRT1_2, 6);
    // The text's tokens repeat to fill the prompt, as PEFT starts it.
    expect(textStartIds([7, 8], 5)).toEqual([7, 8, 7, 8, 7]);
  });

  it("reports how far each trained vector moved from the text it started as", async () => {
    const output = join(mkdtempSync(join(tmpdir(), "softprompt-refine-")), "run");
    await train({ model: MODEL, data: data("train"), valid: data("valid"), output, numVirtualTokens: 4, init: "text", initText: "copy: 1 2", steps: 200, lr: 0.1 });
    const report = await inspect({ model: MODEL, adapter: output, top: 3 });
    expect(report.vectors.map((v) => v.start?.token)).toEqual(["copy:", "1", "2", "copy:"]);
    for (const v of report.vectors) expect(v.start!.relativeDistance).toBeGreaterThan(0.5);
    expect(report.vectors[3].nearest[0].token).toBe("reverse:");
    expect(report.vectors[3].start!.stillNearest).toBe(false);
    expect(inspectView(report)).toMatch(/Refinement from the hard prompt: \d of 4 vectors are now nearer another token/);
  });

  it("says nothing about starts for a prompt not started from a text", async () => {
    const output = join(mkdtempSync(join(tmpdir(), "softprompt-refine-")), "run");
    await train({ model: MODEL, data: data("valid"), output, numVirtualTokens: 2, init: "vocab", steps: 2 });
    const report = await inspect({ model: MODEL, adapter: output });
    expect(report.vectors.every((v) => v.start === undefined)).toBe(true);
    expect(inspectView(report)).not.toContain("Refinement");
  });
});
