// The review-file reader under fast-check: any text either parses or fails with the reader's own
// error (a SoftpromptError naming the file and line); nothing else is ever thrown. A written review
// reads back as written.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { SoftpromptError } from "../../src/util/errors.js";
import { formatReview, parseReview, VERDICTS, type ReviewItem } from "../../src/feedback/review.js";

const FILE = "review.jsonl";

/** Parses, or throws our error with a position; anything else fails the property. */
function parsesOrPlacedError(text: string): void {
  try {
    parseReview(text, FILE);
  } catch (err) {
    expect(err).toBeInstanceOf(SoftpromptError);
    const { place } = err as SoftpromptError;
    expect(place.file).toBe(FILE);
    expect(place.line).toBeGreaterThanOrEqual(1);
    expect(place.line).toBeLessThanOrEqual(text.split(/\r?\n/).length);
  }
}

const item: fc.Arbitrary<ReviewItem> = fc
  .record({
    line: fc.integer({ min: 1, max: 1e6 }),
    prompt: fc.string(),
    answer: fc.string(),
    verdict: fc.constantFrom(...VERDICTS),
    correction: fc.option(fc.string({ minLength: 1 }), { nil: null }),
  })
  .map((it) => (it.verdict === "bad" ? it : { ...it, correction: null }));

/** Records near the valid shape: a field dropped, retyped or added, or a line cut short. */
const nearRecord = fc.tuple(item, fc.constantFrom("line", "prompt", "answer", "verdict", "correction", "extra"), fc.jsonValue(), fc.nat(), fc.constantFrom("drop", "set", "cut", "keep")).map(([it, field, value, cut, how]) => {
  const record: Record<string, unknown> = { ...it };
  if (how === "drop") delete record[field];
  if (how === "set") record[field] = value;
  const text = JSON.stringify(record);
  return how === "cut" ? text.slice(0, cut % (text.length + 1)) : text;
});

describe("review file reader", () => {
  it("parses any text or fails with its own error and a position", () => {
    fc.assert(fc.property(fc.string({ unit: "binary" }), parsesOrPlacedError), { numRuns: 500 });
    fc.assert(fc.property(fc.array(fc.oneof(nearRecord, fc.jsonValue().map((v) => JSON.stringify(v)), fc.string())), (lines) => parsesOrPlacedError(lines.join("\n"))), { numRuns: 500 });
  });

  it("reads back what it writes", () => {
    const distinct = fc.uniqueArray(item, { selector: (it) => it.line, maxLength: 20 });
    fc.assert(
      fc.property(distinct, (items) => {
        const back = parseReview(formatReview(items), FILE).map(({ at: _at, ...it }) => it);
        expect(back).toEqual(items);
      }),
      { numRuns: 200 },
    );
  });

  it.each([
    ['{"line":1,"prompt":"a","answer":"b","verdict":"meh","correction":null}', 1, "verdict", 'expected "good", "bad" or "" (not reviewed yet), got "meh"'],
    ['{"line":1,"prompt":"a","answer":"b","verdict":"good","correction":"c"}', 1, "correction", 'a correction goes with the verdict "bad"'],
    ['{"line":1,"prompt":"a","answer":"b","verdit":"good"}', 1, "verdit", "unknown field"],
    ['{"line":1,"prompt":"a","answer":"b","verdict":""}\n\n{"line":1,"prompt":"a","answer":"b","verdict":"bad"}', 3, "line", "input line 1 is reviewed twice (also on line 1)"],
    ['{"line":2.5,"prompt":"a","answer":"b","verdict":""}', 1, "line", "expected the input's line in the data file (a positive integer)"],
    ['{"line":1,"prompt":"a","answer":"b","verdict":"bad","correction":""}', 1, "correction", "is empty; expected null or the right answer"],
    ['{"line":1,"prompt":"a"', 1, undefined, "not valid JSON"],
  ])("names the line and field of a bad item: %s", (text, line, field, message) => {
    let caught: unknown;
    try {
      parseReview(text, FILE);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SoftpromptError);
    expect((caught as SoftpromptError).place).toEqual({ file: FILE, line, ...(field === undefined ? {} : { field }) });
    expect((caught as Error).message).toContain(message);
  });
});
