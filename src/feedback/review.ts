/**
 * The review file: one JSON object per line, one per input of the data, holding the model's answer
 * and a person's verdict on it —
 *   {"line": 3, "prompt": "3 1 4 = ", "answer": "4 1 3", "verdict": "", "correction": null}
 * `line` is the input's line in the data file it was made from; `verdict` is "" (not reviewed yet),
 * "good" or "bad"; a bad answer may carry the right one in `correction`. Reading never throws
 * anything but a SoftpromptError naming the file, the line and the field.
 */
import { promises as fsp } from "node:fs";
import { z } from "zod";
import { fail } from "../util/errors.js";
import { isPlainObject, jsonLines, parseWith } from "../formats/json.js";
import { writeFileAtomic } from "../util/fs.js";

export const VERDICTS = ["", "good", "bad"] as const;
export type Verdict = (typeof VERDICTS)[number];

export interface ReviewItem {
  /** The input's 1-based line in the data file. */
  line: number;
  prompt: string;
  /** What the model answered. */
  answer: string;
  verdict: Verdict;
  /** What the answer should have been (only with "bad"). */
  correction: string | null;
  /** Where it was read from: its 1-based line in the review file (not written back). */
  at?: number;
}

const EXPECTED = 'expected {"line","prompt","answer","verdict": "" | "good" | "bad","correction": null or a string}';

const FIELDS = ["line", "prompt", "answer", "verdict", "correction"];

const itemSchema = z
  .object(
    {
      line: z.number({ error: "expected the input's line in the data file (a positive integer)" }).int().positive(),
      prompt: z.string({ error: "expected the input text (a string)" }),
      answer: z.string({ error: "expected the model's answer (a string)" }),
      verdict: z.enum(VERDICTS, { error: (iss) => `expected "good", "bad" or "" (not reviewed yet), got ${JSON.stringify(iss.input) ?? "nothing"}` }),
      correction: z.string({ error: "expected null or the right answer (a string)" }).min(1, { error: "is empty; expected null or the right answer" }).nullable().default(null),
    },
    { error: `expected an object; ${EXPECTED}` },
  )
  .refine((item) => item.correction === null || item.verdict === "bad", { error: 'a correction goes with the verdict "bad"', path: ["correction"] });

/** Parse a review file's text; every problem names the file, the 1-based line and the field. */
export function parseReview(text: string, file: string): ReviewItem[] {
  const seen = new Map<number, number>();
  return jsonLines(text, file, "data", EXPECTED).map(({ record, line }) => {
    // A misspelt field would otherwise be dropped silently (a "verdit" never counted).
    const unknown = isPlainObject(record) ? Object.keys(record).find((k) => !FIELDS.includes(k)) : undefined;
    if (unknown !== undefined) fail("data", `unknown field; ${EXPECTED}`, { file, line, field: unknown });
    const item = parseWith(itemSchema, record, "data", { file, line });
    const earlier = seen.get(item.line);
    if (earlier !== undefined) fail("data", `input line ${item.line} is reviewed twice (also on line ${earlier})`, { file, line, field: "line" });
    seen.set(item.line, line);
    return { ...item, at: line };
  });
}

export function formatReview(items: readonly ReviewItem[]): string {
  return items.map((it) => JSON.stringify({ line: it.line, prompt: it.prompt, answer: it.answer, verdict: it.verdict, correction: it.correction })).join("\n") + (items.length > 0 ? "\n" : "");
}

/** Read a review file, or fail naming it (a missing file too). */
export async function readReview(path: string): Promise<ReviewItem[]> {
  let text: string;
  try {
    text = await fsp.readFile(path, "utf8");
  } catch (err) {
    fail("file", `cannot read the review file (${(err as Error).message})`, { file: path }, err);
  }
  return parseReview(text, path);
}

/** Written whole and renamed into place: an interrupted write leaves the previous file. */
export const writeReview = (path: string, items: readonly ReviewItem[]) => writeFileAtomic(path, formatReview(items));

export interface ReviewCounts {
  good: number;
  bad: number;
  corrected: number;
  pending: number;
}

export function countVerdicts(items: readonly ReviewItem[]): ReviewCounts {
  return {
    good: items.filter((i) => i.verdict === "good").length,
    bad: items.filter((i) => i.verdict === "bad").length,
    corrected: items.filter((i) => i.correction !== null).length,
    pending: items.filter((i) => i.verdict === "").length,
  };
}
