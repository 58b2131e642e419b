// Per-row signals are checked when a row is read: a bad one fails naming file, line and field.
import { describe, expect, it } from "vitest";
import { parseCsvExamples, parseJsonl, rowSignals } from "../../src/data/index.js";
import { errorOf } from "../helpers/errors.js";

const jsonl = (...rows: object[]) => rows.map((r) => JSON.stringify(r)).join("\n");
const ok = { prompt: "1 2 = ", completion: "2 1" };

describe("row signals", () => {
  it("reads negatives, weights, rewards, pairs and labels", () => {
    const rows = parseJsonl(jsonl({ ...ok, negative: true, weight: 0.5 }, { ...ok, reward: -2 }, { prompt: "p", chosen: "a", rejected: "b" }, { prompt: "x", label: "yes" }), "d.jsonl");
    expect(rows.map((r) => rowSignals(r.fields))).toEqual([
      { negative: true, weight: 0.5 },
      { negative: false, weight: 1, reward: -2 },
      { negative: false, weight: 1, pair: { chosen: "a", rejected: "b" } },
      { negative: false, weight: 1, label: "yes" },
    ]);
    // A pair's chosen completion is the row's completion; a labelled row's prompt is its text.
    expect(rows[2]).toMatchObject({ kind: "prompt", prompt: "p", completion: "a" });
    expect(rows[3]).toMatchObject({ kind: "text", text: "x" });
  });

  it("reads CSV columns written as text", () => {
    const [row] = parseCsvExamples("prompt,completion,weight,negative,reward\na,b,2.5,true,-1\n", "d.csv");
    expect(rowSignals(row.fields)).toEqual({ negative: true, weight: 2.5, reward: -1 });
  });

  it.each([
    [{ ...ok, reward: "lots" }, "reward", 'expected a reward (a finite number), got string "lots"'],
    [{ ...ok, reward: null }, "reward", "expected a reward (a finite number), got null"],
    [{ ...ok, weight: -1 }, "weight", "expected a weight (a finite number ≥ 0), got number -1"],
    [{ ...ok, negative: "yes" }, "negative", 'expected true or false, got string "yes"'],
    [{ prompt: "p", completion: "c", rejected: "b" }, "rejected", 'has "rejected" but no "chosen"; a preference pair needs both completions of the prompt'],
    [{ prompt: "p", chosen: "a" }, "chosen", 'has "chosen" but no "rejected"; a preference pair needs both completions of the prompt'],
    [{ prompt: "p", chosen: "a", rejected: "" }, "rejected", 'expected the rejected completion (a non-empty string), got string ""'],
    [{ prompt: "p", chosen: "a", rejected: "b", negative: true }, "negative", 'a preference pair cannot be "negative": its "rejected" completion is the negative one'],
    [{ prompt: "x", label: "" }, "label", 'expected a label (a non-empty string), got string ""'],
  ])("refuses %j, naming file, line and field", (bad, field, message) => {
    const err = errorOf(() => parseJsonl(jsonl(ok, bad), "d.jsonl"));
    expect(err.code).toBe("data");
    expect(err.place).toEqual({ file: "d.jsonl", line: 2, field });
    expect(err.message).toBe(`d.jsonl:2, field "${field}": ${message}`);
  });

  it("refuses a CSV reward that is not a finite number", () => {
    const err = errorOf(() => parseCsvExamples("prompt,completion,reward\na,b,1\nc,d,Infinity\n", "d.csv"));
    expect(err.place).toEqual({ file: "d.csv", line: 3, field: "reward" });
  });
});
