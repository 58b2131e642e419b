/** Learned control codes on the command line and in settings: `NAME=value` pairs. */
import { fail } from "../util/errors.js";
import type { Template } from "./parse.js";
import { codeValuesOf } from "./layout.js";

/** `--code NAME=value` flags (repeatable) → the value chosen for each code. */
export function parseCodeFlags(flags: readonly string[] | undefined, flag = "--code"): Map<string, string> {
  const codes = new Map<string, string>();
  for (const pair of flags ?? []) {
    const at = pair.indexOf("=");
    if (at <= 0 || at === pair.length - 1) fail("usage", `expected NAME=value, got ${JSON.stringify(pair)}`, { field: flag });
    const name = pair.slice(0, at);
    if (codes.has(name)) fail("usage", `code ${name} is given twice`, { field: flag });
    codes.set(name, pair.slice(at + 1));
  }
  return codes;
}

/** Every value of each learned code in the rows' fields, as the `codeValues` setting of the template method. */
export function codeValueSettings(template: Template, rows: readonly { fields?: Readonly<Record<string, unknown>> }[]): string[] {
  return [...codeValuesOf(template, rows)].flatMap(([name, values]) => values.map((v) => `${name}=${v}`));
}
