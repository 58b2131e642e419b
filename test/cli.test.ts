// The CLI end to end on the golden tiny GPT-2: every command with --json prints one JSON object,
// and bad input gives a clear error (as JSON with --json), never a stack trace.
import { describe, expect, it } from "vitest";
import { runCli } from "./helpers/cli.js";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { modelDir } from "./helpers/golden.js";

const MODEL = modelDir("gpt2");

const cli = runCli;

const json = (stdout: string) => {
  const lines = stdout.trim().split("\n");
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]);
};

describe("softprompt CLI", () => {
  const work = mkdtempSync(join(tmpdir(), "softprompt-cli-"));
  const data = join(work, "data.jsonl");
  writeFileSync(data, Array.from({ length: 12 }, (_, i) => JSON.stringify({ prompt: `item ${i} is`, completion: " blue" })).join("\n") + "\n");
  const out = join(work, "adapter");

  it("info", async () => {
    const r = await cli(["info", MODEL, "--json"]);
    expect(r.code).toBe(0);
    expect(json(r.stdout)).toMatchObject({ modelType: "gpt2", vocabSize: 512, contextLength: 128, layers: 2 });
  });

  it("train → generate → eval → inspect", async () => {
    const t = await cli(["train", "--model", MODEL, "--data", data, "--output", out, "--num-virtual-tokens", "4", "--steps", "6", "--batch-size", "4", "--lr", "0.1", "--eval-every", "3", "--json"]);
    expect(t.stderr).not.toMatch(/at .*\.ts:\d+/);
    expect(t.code).toBe(0);
    expect(json(t.stdout)).toMatchObject({ steps: 6, output: out });
    expect(existsSync(join(out, "adapter_model.safetensors"))).toBe(true);

    const g = await cli(["generate", "--model", MODEL, "--adapter", out, "--input", "item 3 is", "--max-new-tokens", "3", "--json"]);
    expect(g.code).toBe(0);
    const gen = json(g.stdout);
    expect(gen.ids.length).toBeGreaterThan(0);
    expect(typeof gen.text).toBe("string");

    const e = await cli(["eval", "--model", MODEL, "--data", data, "--adapter", out, "--compare-text", "Answer: ", "--json"]);
    expect(e.code).toBe(0);
    const report = json(e.stdout);
    expect(report).toMatchObject({ prompting: "soft", examples: 12 });
    for (const r of [report, report.baselines.none, report.baselines.text]) {
      expect(r.perplexity).toBeCloseTo(Math.exp(r.loss), 6);
      expect(r.accuracy).toBeGreaterThanOrEqual(0);
    }
    // The trained prompt fits the data better than no prompt.
    expect(report.loss).toBeLessThan(report.baselines.none.loss);

    const i = await cli(["inspect", "--model", MODEL, "--adapter", out, "--compare", out, "--top", "3", "--json"]);
    expect(i.code).toBe(0);
    const ins = json(i.stdout);
    expect(ins.vectors).toHaveLength(4);
    expect(ins.vectors[0].nearest).toHaveLength(3);
    expect(ins.similarity.flat).toBeCloseTo(1, 5);
  });

  it("a malformed dataset line is reported with file:line, as JSON, exit 1, no output folder", async () => {
    const bad = join(work, "bad.jsonl");
    writeFileSync(bad, '{"prompt": "a", "completion": "b"}\n{"prompt": 3}\n');
    const r = await cli(["train", "--model", MODEL, "--data", bad, "--output", join(work, "never"), "--json"]);
    expect(r.code).toBe(1);
    const { error } = json(r.stdout);
    expect(error.code).toBe("data");
    expect(error.message).toContain(`${bad}:2`);
    expect(existsSync(join(work, "never"))).toBe(false);
  });

  it("usage errors exit 2 with a message, not a stack trace", async () => {
    const r = await cli(["generate", "--model", MODEL, "--input", "x", "--max-new-tokens", "two"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--max-new-tokens must be an integer");
    const m = await cli(["info", join(work, "nothing-here"), "--json"]);
    expect(m.code).toBe(1);
    expect(json(m.stdout).error.message).toContain("nothing-here");
    expect(m.stderr).toBe("");
  });

  it("an adapter for another model is refused", async () => {
    const r = await cli(["generate", "--model", modelDir("llama"), "--adapter", out, "--input", "x", "--json"]);
    expect(r.code).toBe(1);
    expect(json(r.stdout).error.code).toBe("adapter");
    rmSync(work, { recursive: true, force: true });
  });
});
