// Printing results and errors: one JSON object with --json, readable text otherwise; never a stack trace for a user error.
import { SoftpromptError } from "../util/errors.js";

export function printResult(result: object, json: boolean | undefined, command: string): void {
  if (json) {
    process.stdout.write(JSON.stringify(result) + "\n");
    return;
  }
  process.stdout.write(`${command}:\n${formatText(result, "  ")}`);
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

export function printError(err: unknown, json: boolean): void {
  if (err instanceof SoftpromptError) {
    if (json) process.stdout.write(JSON.stringify({ error: { code: err.code, message: err.message, place: err.place } }) + "\n");
    else process.stderr.write(`error: ${err.message}\n`);
    return;
  }
  // Not ours: a bug or an environment failure. Say so, with the stack, since it is for us to fix.
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
  if (json) process.stdout.write(JSON.stringify({ error: { code: "internal", message: String((err as Error)?.message ?? err) } }) + "\n");
  process.stderr.write(`internal error (please report): ${message}\n`);
}
