// `softprompt data check`: counts, duplicates (exact and near), conflicts, leakage, token lengths and
// truncation for a model, positive/negative balance with weights; bad input names the file and line.
import { describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { dataCheck } from "../src/workflows.js";
import { dataCheckView } from "../src/report/data-check.js";
import { normalize } from "../src/data/check.js";

const MODEL = fileURLToPath(new URL("../examples/models/tiny-tasks", import.meta.url));
const BIN = fileURLToPath(new URL("../bin/softprompt.js", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "softprompt-data-check-"));
const write = (name: string, rows: unknown[]) => {
  const path = join(work, name);
  writeFileSync(path, rows.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + "\n");
  return path;
};

const train = write("train.jsonl", [
  { prompt: "3 1 = ", completion: "1 3" },
  { prompt: "3 1 = ", completion: "1 3" },
  { prompt: "3  1 =", completion: "1 3" },
  { prompt: "3 1 = ", completion: "3 1", negative: true },
  { prompt: "5 2 = ", completion: "2 5" },
  { prompt: "5 2 = ", completion: "5 2" },
  { prompt: "9 8 7 6 5 4 3 2 1 = ", completion: "1 2 3 4 5 6 7 8 9" },
]);
const valid = write("valid.jsonl", [{ prompt: "5 2 = ", completion: "2 5" }, { prompt: "3 1 =", completion: "1 3" }, { prompt: "4 4 = ", completion: "4 4" }]);

describe("data check", () => {
  it("counts answers, finds exact and near duplicates, conflicts and leaks, and balances negatives", async () => {
    const r = await dataCheck({ file: train, valid });
    expect(r.examples).toBe(7);
    expect(r.labels.top[0]).toEqual({ label: "1 3", count: 3 });
    expect(r.duplicates.exact).toEqual([{ lines: [1, 2], text: "3 1 = " }]);
    expect(r.duplicates.near.map((g) => g.lines)).toEqual([[1, 2, 3]]);
    expect(r.conflicts.map((g) => g.lines)).toEqual([[5, 6]]);
    expect(r.leakage!.leaks).toEqual([
      { trainLine: 5, validLine: 1, kind: "exact", input: "5 2 = " },
      { trainLine: 1, validLine: 2, kind: "near", input: "3 1 =" },
    ]);
    // 6 positives, 1 negative: weights n / (2 n_side) make each side weigh half.
    expect(r.balance).toEqual({ positives: 6, negatives: 1, pairs: 0, suggestedWeights: { positive: 7 / 12, negative: 3.5 } });
    const text = dataCheckView(r);
    expect(text).toContain("positives / negatives  6 / 1");
    expect(text).toContain(`${valid}:1 = ${train}:5 (exact)`);
  });

  it("measures token lengths with the model's tokenizer and lists the rows --max-length would cut", async () => {
    const r = await dataCheck({ file: train, model: MODEL, maxLength: 10 });
    // The tiny model's tokenizer: one token per digit or sign, plus the end-of-sequence token.
    expect(r.lengths).toMatchObject({ maxLength: 10, min: 6, max: 20, truncated: [{ line: 7, tokens: 20 }] });
    expect(dataCheckView(r)).toContain("1 rows over --max-length 10 would be cut\n  line 7: 20 tokens");
  });

  it("counts preference pairs on both sides and reads CSV negatives as the objectives do", async () => {
    const pairs = write("pairs.jsonl", [{ prompt: "1 2 = ", chosen: "2 1", rejected: "1 2" }, { prompt: "3 4 = ", completion: "4 3" }]);
    expect((await dataCheck({ file: pairs })).balance).toEqual({ positives: 2, negatives: 1, pairs: 1, suggestedWeights: { positive: 0.75, negative: 1.5 } });
    const csv = join(work, "rows.csv");
    writeFileSync(csv, "prompt,completion,negative\n1 = ,1,false\n2 = ,3,true\n");
    expect((await dataCheck({ file: csv })).balance).toMatchObject({ positives: 1, negatives: 1 });
  });

  it("near means the same up to case, spacing and punctuation", () => {
    expect(normalize("  Hello,  World!")).toBe(normalize("hello world"));
    expect(normalize("3 1")).not.toBe(normalize("1 3"));
  });

  it("names the file and line of a malformed row", async () => {
    const bad = write("bad.jsonl", [{ prompt: "a", completion: "b" }, "{not json"]);
    await expect(dataCheck({ file: bad })).rejects.toThrow(`${bad}:2: not valid JSON`);
    await expect(dataCheck({ file: train, valid: join(work, "missing.jsonl") })).rejects.toThrow(/missing\.jsonl: cannot read the dataset/);
  });

  it("prints one JSON object with --json, and a usage error for a bad --max-length", async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number; stdout: string }>((resolve) =>
        execFile(process.execPath, [BIN, "data", "check", ...args], (err, stdout) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout })),
      );
    const ok = await run([train, "--json"]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).balance.negatives).toBe(1);
    const usage = await run([train, "--max-length", "0", "--json"]);
    expect(usage.code).toBe(2);
    expect(JSON.parse(usage.stdout).error).toMatchObject({ code: "usage", field: "--max-length" });
  });
});
