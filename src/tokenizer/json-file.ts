import { promises as fsp } from "node:fs";
import { fail, type ErrorCode } from "../util/errors.js";

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

/** A JSON object (not an array, not null), as the typed callers expect. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
