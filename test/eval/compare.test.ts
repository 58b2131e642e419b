// Methods side by side: each trained and evaluated on the same data, a row of numbers each, the bare
// model for reference, and a chart of accuracy against trainable parameters.
import { describe, expect, it } from "vitest";
import { runCliJson } from "../helpers/cli.js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { compareMethods, compareSvg } from "../../src/compare.js";
import { compareView } from "../../src/report/views.js";

const cli = runCliJson;

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const data = (name: string) => fileURLToPath(new URL(`../../examples/data/${name}.jsonl`, import.meta.url));

describe("compare", () => {
  it("trains and evaluates each method on the same data; the table and the chart show each", async () => {
    const output = mkdtempSync(join(tmpdir(), "softprompt-compare-"));
    const report = await compareMethods({
      model: MODEL, data: data("reverse.train"), valid: data("reverse.valid"), output, methods: ["prompt"],
      settings: { steps: 150, lr: 0.1, numVirtualTokens: 8 },
    });
    const [prompt] = report.results;
    expect(prompt.method).toBe("prompt");
    expect(prompt.trainableParameters).toBe(8 * 64);
    expect(prompt.accuracy!).toBeGreaterThan(report.noPrompt.accuracy! + 0.3);
    expect(prompt.tokensPerSecond).toBeGreaterThan(0);
    expect(prompt.adapterBytes).toBeGreaterThan(8 * 64 * 4);
    const svg = readFileSync(report.chart, "utf8");
    expect(svg).toContain("<svg");
    expect(svg).toContain(">prompt</text>");
    const view = compareView(report);
    expect(view).toMatch(/method\s+trainable params\s+valid loss\s+accuracy/);
    expect(view).toMatch(/no prompt/);
    rmSync(output, { recursive: true });
  });

  it("refuses an unknown method and a comparison without held-out data, naming the flag", async () => {
    await expect(compareMethods({ model: MODEL, data: data("reverse.train"), valid: data("reverse.valid"), output: "x", methods: ["nope"] })).rejects.toThrow(/field "--methods": unknown method "nope"/);
    await expect(compareMethods({ model: MODEL, data: data("reverse.train"), output: "x", methods: ["prompt"] })).rejects.toThrow(/--valid/);
  });

  it("plots validation loss when the data has no answers to score", () => {
    const row = { method: "m", trainableParameters: 100, validLoss: 1.5, accuracy: null, trainSeconds: 1, tokensPerSecond: 1, adapterBytes: 1, adapter: "a" };
    expect(compareSvg([row])).toContain("Validation loss against trainable parameters");
  });

  it("the command names a bad --methods or --lr-for value, as one JSON error with exit 2", async () => {
    const base = ["compare", "--model", MODEL, "--data", data("reverse.train"), "--valid", data("reverse.valid"), "--output", "unused"];
    const unknown = await cli([...base, "--methods", "prompt,nope"]);
    expect(unknown.code).toBe(2);
    expect(JSON.parse(unknown.stdout).error.message).toMatch(/unknown method "nope"; registered: prompt/);
    const badRate = await cli([...base, "--methods", "prompt", "--lr-for", "prompt=fast"]);
    expect(badRate.code).toBe(2);
    expect(JSON.parse(badRate.stdout).error.message).toMatch(/--lr-for must be a number, got "fast"/);
  });
});
