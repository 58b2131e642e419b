// Printing results and errors: one JSON object with --json, readable text otherwise; never a stack trace for a user error.
import type { CommanderError } from "commander";
import { SoftpromptError } from "../util/errors.js";

export function printJson(result: object): void {
  process.stdout.write(JSON.stringify(result) + "\n");
}

export function printResult(result: object, json: boolean | undefined, command: string): void {
  if (json) return printJson(result);
  process.stdout.write(`${command}:\n${formatText(result, "  ")}`);
}

/** Readable text (a table, a summary) without --json; the result as one JSON object with it. */
export function printView<T extends object>(result: T, json: boolean | undefined, view: (result: T) => string): void {
  if (json) printJson(result);
  else process.stdout.write(view(result));
}

/** A note for the user that must not disturb --json's one object on stdout. */
export function warn(message: string): void {
  process.stderr.write(`warning: ${message}\n`);
}

function formatText(value: unknown, indent: string): string {
  if (value === null || typeof value !== "object") return `${indent}${format(value)}\n`;
  let out = "";
  for (const [k, v] of Object.entries(value)) {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) out += `${indent}${k}:\n${formatText(v, indent + "  ")}`;
    else if (Array.isArray(v) && v.some((x) => typeof x === "object")) {
      out += `${indent}${k}:\n`;
      for (const item of v) out += `${indent}  - ${JSON.stringify(item)}\n`;
    } else out += `${indent}${k}: ${format(v)}\n`;
  }
  return out;
}

function format(v: unknown): string {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(6);
  return Array.isArray(v) ? v.map(format).join(", ") : String(v);
}

interface ErrorJson {
  code: string;
  message: string;
  field?: string;
  file?: string;
  line?: number;
}

function printErrorJson(error: ErrorJson): void {
  const { code, message, field, file, line } = error;
  printJson({ error: { code, message, ...(field === undefined ? {} : { field }), ...(file === undefined ? {} : { file }), ...(line === undefined ? {} : { line }) } });
}

/** `flag`: the option at fault, when the CLI knows it better than the error's own field name. */
export function printError(err: unknown, json: boolean, flag?: string): void {
  if (err instanceof SoftpromptError) {
    if (json) printErrorJson({ code: err.code, message: err.message, ...err.place, ...(flag === undefined ? {} : { field: flag }) });
    else process.stderr.write(`error: ${err.message}\n`);
    return;
  }
  // Not ours: a bug or an environment failure. Say so, with the stack, since it is for us to fix.
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
  if (json) printErrorJson({ code: "internal", message: String((err as Error)?.message ?? err) });
  process.stderr.write(`internal error (please report): ${message}\n`);
}

/**
 * Commander's own parse errors (a bad value, a missing or unknown flag) as a usage error. Commander
 * already printed them, with the help, unless --json silenced it; with --json they become one object.
 */
export function printUsageError(err: CommanderError, json: boolean): void {
  if (!json) return;
  // "error: option '--lr <rate>' argument 'abc' is invalid. --lr must be a number, got "abc"" → the part after "invalid."
  const text = err.message.replace(/^error: /, "");
  const field = /'(--[\w-]+)/.exec(text)?.[1];
  const reason = /is invalid\. (.*)$/s.exec(text)?.[1];
  const message = reason === undefined ? text : reason.startsWith(field ?? "\0") ? reason : `${field}: ${reason}`;
  printErrorJson({ code: "usage", message: message.trim(), field });
}
