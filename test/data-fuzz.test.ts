// The data loader under fast-check: any text either parses or fails with the loader's own error, placed
// at the file and a line of it (and a field, when one record's value is wrong); nothing else is thrown.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parseCsvExamples, parseJsonl, rowSignals } from "../src/data/index.js";
import { SoftpromptError } from "../src/util/errors.js";
import { parseVerbalizer } from "../src/eval/classify.js";

const FILE = "fuzz.jsonl";
const KEYS = ["prompt", "completion", "text", "messages", "chosen", "rejected", "negative", "weight", "reward", "label", "role", "content"];

/** Records built from the keys the loader knows, with any JSON value, so every branch of it is reached. */
const value = fc.oneof(fc.string(), fc.double(), fc.boolean(), fc.constant(null), fc.jsonValue({ maxDepth: 2 }),
  fc.array(fc.record({ role: fc.oneof(fc.constantFrom("user", "assistant", "system"), fc.string()), content: fc.oneof(fc.string(), fc.integer()) }), { maxLength: 3 }));
const record = fc.dictionary(fc.constantFrom(...KEYS), value, { maxKeys: 5 });
const line = fc.oneof(record.map((r) => JSON.stringify(r)), fc.jsonValue().map((v) => JSON.stringify(v)), fc.string(), fc.constant(""));

function expectLoaderResult(run: () => unknown, file: string, lines: number): void {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(SoftpromptError);
    const { place, code } = err as SoftpromptError;
    expect(code).toBe("data");
    expect(place.file).toBe(file);
    expect(place.line).toBeGreaterThanOrEqual(1);
    expect(place.line).toBeLessThanOrEqual(lines);
  }
}

describe("the data loader under fuzzing", () => {
  it("JSONL: any lines parse or fail with the file and a line of it", () => {
    fc.assert(
      fc.property(fc.array(line, { minLength: 1, maxLength: 6 }), (lines) => {
        const text = lines.join("\n");
        expectLoaderResult(() => parseJsonl(text, FILE), FILE, text.split("\n").length);
      }),
      { numRuns: 2000, seed: 15 },
    );
  });

  it("JSONL: a failure about one value names a field the record has", () => {
    fc.assert(
      fc.property(record, (r) => {
        try {
          parseJsonl(JSON.stringify(r), FILE);
        } catch (err) {
          const field = (err as SoftpromptError).place.field;
          if (field !== undefined) expect(Object.keys(r).some((k) => field.startsWith(k)) || ["completion", "chosen", "rejected", "prompt", "text"].includes(field)).toBe(true);
        }
      }),
      { numRuns: 2000, seed: 16 },
    );
  });

  it("JSONL: well-formed rows with any valid signals parse and keep them", () => {
    const row = fc.record({ prompt: fc.string(), completion: fc.string({ minLength: 1 }), weight: fc.double({ min: 0, max: 1e6, noNaN: true }), reward: fc.double({ min: -1e6, max: 1e6, noNaN: true }), negative: fc.boolean() });
    fc.assert(
      fc.property(row, (r) => {
        const [example] = parseJsonl(JSON.stringify(r), FILE);
        const written = JSON.parse(JSON.stringify(r)) as typeof r; // as JSON keeps them (-0 is written 0)
        expect(rowSignals(example.fields)).toEqual({ negative: written.negative, weight: written.weight, reward: written.reward });
      }),
      { numRuns: 500, seed: 18 },
    );
  });

  it("CSV: any text parses or fails with the file and a line of it", () => {
    const cell = fc.oneof(fc.string(), fc.constantFrom("true", "false", "1.5", "-2", "NaN", "Infinity", "", '"a,b"'));
    const header = fc.shuffledSubarray(["prompt", "completion", "text", "weight", "reward", "negative", "label"], { minLength: 1 });
    fc.assert(
      fc.property(header, fc.array(fc.array(cell, { maxLength: 8 }), { maxLength: 5 }), fc.string(), (columns, rows, noise) => {
        const text = [columns.join(","), ...rows.map((r) => r.join(",")), noise].join("\n");
        expectLoaderResult(() => parseCsvExamples(text, "fuzz.csv"), "fuzz.csv", text.split(/\r\n|\n|\r/).length);
      }),
      { numRuns: 1000, seed: 17 },
    );
  });

  it("a verbalizer: any JSON value parses or fails with the file (and the label, for a bad word list)", () => {
    const words = fc.oneof(fc.string(), fc.array(fc.oneof(fc.string(), fc.integer(), fc.constant(null)), { maxLength: 3 }), fc.jsonValue({ maxDepth: 1 }));
    fc.assert(
      fc.property(fc.oneof(fc.dictionary(fc.string(), words, { maxKeys: 4 }), fc.jsonValue()), (value) => {
        try {
          const verbalizer = parseVerbalizer(value, "v.json");
          for (const ws of verbalizer.values()) expect(ws.length).toBeGreaterThan(0);
        } catch (err) {
          expect(err).toBeInstanceOf(SoftpromptError);
          expect((err as SoftpromptError).place.file).toBe("v.json");
        }
      }),
      { numRuns: 1000, seed: 19 },
    );
  });
});
