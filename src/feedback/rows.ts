/**
 * A review turned into training rows: a good answer is a positive row; a bad answer with a correction
 * gives the correction as a positive and the bad answer as a negative (`"negative": true`, which an
 * unlikelihood objective makes less likely); a bad answer alone gives a negative; unreviewed ones none.
 */
import type { Example } from "../data/index.js";
import { promises as fsp } from "node:fs";
import { fail } from "../util/errors.js";
import { isPlainObject } from "../formats/json.js";
import { readReview, type ReviewItem } from "./review.js";

export interface FeedbackRows {
  positives: Example[];
  negatives: Example[];
  /** Items with no verdict yet. */
  pending: number;
}

export function feedbackRows(items: readonly ReviewItem[], file: string): FeedbackRows {
  const rows: FeedbackRows = { positives: [], negatives: [], pending: 0 };
  const row = (it: ReviewItem, completion: string, negative: boolean): Example => ({
    kind: "prompt",
    prompt: it.prompt,
    completion,
    source: { file, line: it.at ?? it.line },
    fields: { prompt: it.prompt, completion, ...(negative ? { negative: true } : {}) },
  });
  for (const it of items) {
    if (it.verdict === "") rows.pending++;
    else if (it.verdict === "good") rows.positives.push(row(it, it.answer, false));
    else {
      if (it.correction !== null) rows.positives.push(row(it, it.correction, false));
      // An empty answer has nothing to make less likely.
      if (it.answer.trim() !== "") rows.negatives.push(row(it, it.answer, true));
    }
  }
  return rows;
}

/**
 * The training rows of a review file for `train --feedback`. Negatives are trained only with the
 * unlikelihood penalty on (`--unlikelihood-weight`): without it nothing would make them less likely,
 * so they are left out and counted in the log, never trained as positives.
 */
export async function reviewTrainingRows(path: string, { unlikelihood }: { unlikelihood: boolean }, onLog?: (line: string) => void): Promise<Example[]> {
  const rows = feedbackRows(await readReview(path), path);
  if (rows.positives.length + rows.negatives.length === 0) fail("data", "no reviewed answers yet: mark some \"good\" or \"bad\" first (softprompt annotate --interactive)", { file: path, field: "verdict" });
  const notes = [`${rows.positives.length} positive rows from the review`];
  if (unlikelihood) notes.push(`${rows.negatives.length} negative rows (bad answers, made less likely)`);
  else if (rows.negatives.length > 0) notes.push(`${rows.negatives.length} bad answers (negatives) are left out: set --unlikelihood-weight to train them`);
  if (rows.pending > 0) notes.push(`${rows.pending} answers not reviewed yet are left out`);
  onLog?.(`--feedback ${path}: ${notes.join("; ")}`);
  return unlikelihood ? [...rows.positives, ...rows.negatives] : rows.positives;
}

/** Every row a review gives (positives and negatives), for `data check` on a review file. */
export async function reviewExamples(path: string): Promise<Example[]> {
  const rows = feedbackRows(await readReview(path), path);
  return [...rows.positives, ...rows.negatives];
}

/** A review file says so on its first row: a "verdict" beside an "answer". */
export async function isReviewFile(path: string): Promise<boolean> {
  const first = (await fsp.readFile(path, "utf8").catch(() => "")).split(/\r?\n/).find((l) => l.trim() !== "");
  try {
    const record: unknown = JSON.parse(first ?? "");
    return isPlainObject(record) && "verdict" in record && "answer" in record;
  } catch {
    return false;
  }
}

