/**
 * Where each soft span of a template lives in its adapter's one table of vectors: named spans (unnamed
 * ones are `#1`, `#2`, …) in order of first appearance, then each learned code's values (sorted by code
 * name, values in the order given). A span used twice is one block of rows, so it is one tensor.
 */
import { fail } from "../util/errors.js";
import type { Template } from "./parse.js";

/** A block of rows of the table: a span, or one value of a code. */
export interface TableBlock {
  /** The span's name, or `code:NAME=value`. */
  key: string;
  offset: number;
  length: number;
  /** The words whose embeddings start it (else sampled vocabulary). */
  initText?: string;
}

export interface TableLayout {
  blocks: Map<string, TableBlock>;
  /** Rows of the table: every block's length summed. */
  rows: number;
  /** Each learned code's values, in table order. */
  codeValues: Map<string, readonly string[]>;
}

export const codeKey = (code: string, value: string) => `code:${code}=${value}`;

/**
 * The table layout of `template`; `encode` counts the tokens of a span started from words, `codeValues`
 * gives every value each learned code can take (from the training data, or an adapter's config).
 */
export function tableLayout(template: Template, encode: (text: string) => readonly number[], codeValues: ReadonlyMap<string, readonly string[]>): TableLayout {
  const blocks = new Map<string, TableBlock>();
  let rows = 0;
  const add = (key: string, length: number, initText?: string) => {
    blocks.set(key, { key, offset: rows, length, initText });
    rows += length;
  };
  for (const span of template.spans.values()) {
    const length = span.length ?? encode(span.initText!).length;
    if (length === 0) fail("usage", `column ${span.at.column}: the words ${JSON.stringify(span.initText)} encode to no tokens, so the span would hold nothing`, { file: template.file, line: span.at.line });
    add(span.name, length, span.initText);
  }
  const codes = new Map<string, readonly string[]>();
  for (const name of [...template.codes.keys()].sort()) {
    const values = codeValues.get(name) ?? [];
    if (values.length === 0) fail("data", `the learned code {code:${name}} has no values: no row carries the field "${name}"`, { file: template.file, line: template.codes.get(name)!.at.line, field: name });
    codes.set(name, values);
    for (const value of values) add(codeKey(name, value), template.codes.get(name)!.length);
  }
  for (const name of codeValues.keys()) if (!template.codes.has(name)) fail("usage", `the template has no learned code {code:${name}}; its codes: ${[...template.codes.keys()].join(", ") || "none"}`, { field: `--code ${name}` });
  return { blocks, rows, codeValues: codes };
}

/** The sorted distinct values of each learned code in some rows' fields (numbers read as their decimal text). */
export function codeValuesOf(template: Template, rows: readonly { fields?: Readonly<Record<string, unknown>> }[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const name of template.codes.keys()) {
    const seen = new Set<string>();
    for (const row of rows) {
      const value = row.fields?.[name];
      if (typeof value === "string" || typeof value === "number") seen.add(String(value));
    }
    out.set(name, [...seen].sort());
  }
  return out;
}
