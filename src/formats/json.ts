/**
 * JSON files and schema checks, one helper each, used everywhere: a malformed file names its line, a
 * value that does not fit its zod schema names the field as `a.b[2].c` and says what was expected.
 */
import { promises as fsp } from "node:fs";
import type { z } from "zod";
import { fail, type ErrorCode, type ErrorPlace } from "../util/errors.js";

/**
 * Read and parse a JSON file. Returns undefined when the file is absent and `optional` is set;
 * otherwise a missing or malformed file fails with `code`, naming the file (and the line, when
 * the parser says where it stopped).
 */
export async function readJsonFile(
  path: string,
  code: ErrorCode,
  { optional = false, expected = "a JSON object" }: { optional?: boolean; expected?: string } = {},
): Promise<unknown> {
  let text: string;
  try {
    text = await fsp.readFile(path, "utf8");
  } catch (err) {
    if (optional && (err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    fail(code, `cannot read the file (${(err as Error).message}); expected ${expected}`, { file: path }, err);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    const line = lineOfJsonError(text, (err as Error).message);
    fail(code, `not valid JSON (${(err as Error).message}); expected ${expected}`, { file: path, line }, err);
  }
}

/** V8 reports either "at position N" (Node 20) or "(line L column C)" (Node 22+); turn it into a 1-based line. */
export function lineOfJsonError(text: string, message: string): number | undefined {
  const lineMatch = /line (\d+) column \d+/.exec(message);
  if (lineMatch) return Number(lineMatch[1]);
  const posMatch = /at position (\d+)/.exec(message);
  if (!posMatch) return undefined;
  const position = Math.min(Number(posMatch[1]), text.length);
  let line = 1;
  for (let i = 0; i < position; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/**
 * The records of a JSON Lines text with their 1-based lines (a BOM, CRLF and blank lines tolerated); a line
 * that is not JSON fails with `code`, naming the file and line and saying what each line should be.
 */
export function jsonLines(text: string, file: string, code: ErrorCode, expected: string): { record: unknown; line: number }[] {
  const records: { record: unknown; line: number }[] = [];
  text.replace(/^\uFEFF/, "").split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    if (raw.trim() === "") return;
    try {
      records.push({ record: JSON.parse(raw), line });
    } catch (err) {
      fail(code, `not valid JSON (${(err as Error).message}); ${expected}`, { file, line }, err);
    }
  });
  return records;
}

/** A JSON object (not an array, not null), as the typed callers expect. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `a.b[2].c` from a zod issue path, for an error's `field`. */
export function formatFieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}

export interface SchemaPlace extends ErrorPlace {
  /** Said after the message, e.g. the shapes a data line may take. */
  hint?: string;
  /**
   * Describe the offending value in zod's generic terms ("missing required field", `"x" is not
   * supported; supported: …`, `5 is invalid: …`) — for schemas without messages of their own.
   */
  describe?: boolean;
}

/**
 * Parse with a schema; the first issue becomes a SoftpromptError with `code`, naming the field
 * (joined to `place.field` as a prefix, if given) and what was expected.
 */
export function parseWith<T>(schema: z.ZodType<T>, value: unknown, code: ErrorCode, place: SchemaPlace = {}): T {
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success) return result.data;
  const [issue, ...others] = result.error.issues;
  const { hint, describe = false, ...where } = place;
  const path = formatFieldPath(issue.path);
  const field = [where.field, path].filter((f) => f !== undefined && f !== "").join(path.startsWith("[") ? "" : ".");
  let message: string;
  if (!describe) message = issue.message;
  else if (issue.code === "invalid_type" && issue.input === undefined) message = "missing required field";
  else if (issue.code === "invalid_value") {
    message = `${JSON.stringify(issue.input)} is not supported; supported: ${issue.values.join(", ")}`;
  } else if (issue.code === "unrecognized_keys") message = `unknown field(s) ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`;
  else message = issue.input === undefined ? issue.message : `${JSON.stringify(issue.input)} is invalid: ${issue.message}`;
  if (others.length > 0) message += ` (and ${others.length} more: ${others.map((i) => formatFieldPath(i.path)).join(", ")})`;
  if (hint !== undefined) message += `; ${hint}`;
  fail(code, message, { ...where, field: field === "" ? undefined : field });
}
