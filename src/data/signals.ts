/**
 * Per-row training signals, read from a row's record beside its text: `"negative": true` (a completion to
 * make less likely), `"weight"` (≥ 0) and `"reward"` (any finite number) to scale a row's likelihood, a
 * preference pair `"chosen"`/`"rejected"` (both completions of the same prompt), and a classification
 * `"label"`. They are checked once, when the row is read, so a bad value fails naming its file, line and
 * field before anything is trained or written; objectives read them again from `TokenizedExample.fields`.
 */
import { fail, type ErrorPlace } from "../util/errors.js";
import { describeValue as show, type SourceLine } from "./example.js";

export interface RowSignals {
  /** The row's completion is to be made less likely (unlikelihood), not learned. */
  negative: boolean;
  /** Scales the row's terms (default 1). */
  weight: number;
  /** The row's reward (reward-weighted likelihood), when it has one. */
  reward?: number;
  /** A preference pair: the completion preferred over `rejected` for the same prompt. */
  pair?: { chosen: string; rejected: string };
  /** A classification row's label (a key of the verbalizer). */
  label?: string;
}

const NO_SIGNALS: RowSignals = { negative: false, weight: 1 };

/** The signals of one record (a JSONL object, or a CSV row's columns), or a data error naming the field. */
export function rowSignals(fields: Readonly<Record<string, unknown>> | undefined, source?: SourceLine): RowSignals {
  if (fields === undefined) return NO_SIGNALS;
  const at = (field: string): ErrorPlace => ({ file: source?.file, line: source?.line, field });
  const signals: RowSignals = {
    negative: "negative" in fields ? flag(fields.negative, at("negative")) : false,
    weight: "weight" in fields ? finite(fields.weight, at("weight"), "a weight (a finite number ≥ 0)", 0) : 1,
  };
  if ("reward" in fields) signals.reward = finite(fields.reward, at("reward"), "a reward (a finite number)");
  if ("label" in fields) signals.label = nonEmpty(fields.label, at("label"), "a label (a non-empty string)");
  if ("chosen" in fields || "rejected" in fields) {
    if (!("chosen" in fields)) fail("data", 'has "rejected" but no "chosen"; a preference pair needs both completions of the prompt', at("rejected"));
    if (!("rejected" in fields)) fail("data", 'has "chosen" but no "rejected"; a preference pair needs both completions of the prompt', at("chosen"));
    if ("completion" in fields) fail("data", 'a preference pair gives "chosen" and "rejected", not also a "completion"', at("completion"));
    if (signals.negative) fail("data", 'a preference pair cannot be "negative": its "rejected" completion is the negative one', at("negative"));
    signals.pair = {
      // As a completion: any non-empty text (whitespace may be what is to learn); the tokenizer refuses one that encodes to nothing.
      chosen: nonEmpty(fields.chosen, at("chosen"), "the preferred completion (a non-empty string)", false),
      rejected: nonEmpty(fields.rejected, at("rejected"), "the rejected completion (a non-empty string)", false),
    };
  }
  return signals;
}

/** CSV columns are text: "true"/"false" and numbers written out are read as such. */
function flag(value: unknown, place: ErrorPlace): boolean {
  if (typeof value === "boolean") return value;
  if (value === "true" || value === "false") return value === "true";
  return fail("data", `expected true or false, got ${show(value)}`, place);
}

function finite(value: unknown, place: ErrorPlace, what: string, min = -Infinity): number {
  const n = typeof value === "number" ? value : typeof value === "string" && value.trim() !== "" ? Number(value) : Number.NaN;
  if (!Number.isFinite(n) || n < min) fail("data", `expected ${what}, got ${show(value)}`, place);
  return n;
}

function nonEmpty(value: unknown, place: ErrorPlace, what: string, trim = true): string {
  if (typeof value !== "string" || (trim ? value.trim() : value) === "") fail("data", `expected ${what}, got ${show(value)}`, place);
  return value;
}
