import { promises as fsp } from "node:fs";
import { extname } from "node:path";
import { fail } from "../util/errors.js";
import { jsonLines } from "../formats/json.js";
import { parseCsv } from "./csv.js";
import { parseExample, EXPECTED_SHAPES, type Example, type ParseOptions } from "./example.js";
import { rowSignals } from "./signals.js";

const FORMATS: Record<string, "jsonl" | "csv"> = { ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv" };

/**
 * Read a dataset: JSONL (one object per line) or CSV (a header row naming prompt,completion or text),
 * chosen by the file extension. Every malformed line fails with its file and 1-based line number.
 * With `taskField`, each row's task is read from that field (CSV: that column) when it has one.
 */
export async function readExamples(path: string, options: ParseOptions = {}): Promise<Example[]> {
  const format = FORMATS[extname(path).toLowerCase()];
  if (format === undefined) {
    fail("data", `unknown dataset format "${extname(path)}"; expected a .jsonl, .ndjson or .csv file`, { file: path });
  }
  let text: string;
  try {
    text = await fsp.readFile(path, "utf8");
  } catch (err) {
    fail("data", `cannot read the dataset (${(err as Error).message})`, { file: path }, err);
  }
  const examples = format === "jsonl" ? parseJsonl(text, path, options) : parseCsvExamples(text, path, options);
  if (examples.length === 0) fail("data", `the dataset has no examples; each line should be ${EXPECTED_SHAPES.replace(/^expected /, "")}`, { file: path });
  return examples;
}

export function parseJsonl(text: string, file: string, options: ParseOptions = {}): Example[] {
  return jsonLines(text, file, "data", EXPECTED_SHAPES).map(({ record, line }) => {
    const example = parseExample(record, { file, line }, options);
    rowSignals(example.fields, { file, line }); // checked here, once, so a bad signal names its line before anything runs
    return example;
  });
}

export function parseCsvExamples(text: string, file: string, options: ParseOptions = {}): Example[] {
  const [header, ...rows] = parseCsv(text, file);
  if (header === undefined) return [];
  const columns = header.fields.map((name) => name.trim());
  const known = columns.filter((c) => c === "prompt" || c === "completion" || c === "text" || c === options.taskField);
  if (!(columns.includes("prompt") && columns.includes("completion")) && !columns.includes("text")) {
    fail("data", `the header names columns ${columns.map((c) => JSON.stringify(c)).join(", ")}; expected "prompt" and "completion", or "text"`, {
      file,
      line: header.line,
    });
  }
  return rows.map(({ line, fields }) => {
    if (fields.length !== columns.length) {
      fail("data", `has ${fields.length} fields; expected ${columns.length}, as in the header (quote fields that contain commas)`, { file, line });
    }
    // Only the known columns take part in the shape, so the key-based choice sees what the header promised; every column is kept in `fields`.
    const record = Object.fromEntries(known.map((name) => [name, fields[columns.indexOf(name)]]));
    const all = Object.fromEntries(columns.map((name, i) => [name, fields[i]]));
    const example = { ...parseExample(record, { file, line }, options), fields: all };
    rowSignals(all, { file, line });
    return example;
  });
}
