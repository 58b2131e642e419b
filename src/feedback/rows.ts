/**
 * A review turned into training rows: a good answer is a positive row; a bad answer with a correction
 * gives the correction as a positive and the bad answer as a negative (`"negative": true`, which an
 * unlikelihood objective makes less likely); a bad answer alone gives a negative; unreviewed ones none.
 */
import type { Example } from "../data/index.js";
import { fail } from "../util/errors.js";
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
 * The training rows of a review file for `train --feedback`. Negatives need an objective that makes a
 * completion less likely; the LM loss would learn them as answers, so until one is there they are left
 * out and counted in the log, never trained as positives.
 */
export async function reviewTrainingRows(path: string, onLog?: (line: string) => void): Promise<Example[]> {
  const rows = feedbackRows(await readReview(path), path);
  if (rows.positives.length + rows.negatives.length === 0) fail("data", "no reviewed answers yet: mark some \"good\" or \"bad\" first (softprompt annotate --interactive)", { file: path, field: "verdict" });
  const notes = [`${rows.positives.length} positive rows from the review`];
  if (rows.pending > 0) notes.push(`${rows.pending} answers not reviewed yet are left out`);
  if (rows.negatives.length > 0) notes.push(`${rows.negatives.length} bad answers (negatives) are left out: the trainer has no unlikelihood objective yet, and the LM loss would learn them as answers`);
  onLog?.(`--feedback ${path}: ${notes.join("; ")}`);
  return rows.positives;
}
