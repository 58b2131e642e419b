/**
 * The template language: text with named slots, an answer mark, soft spans and learned control codes.
 *
 *     {soft:intro:8}Review: {input}{soft:4} Sentiment:{answer}
 *
 * - `{name}` a slot, filled from the example's field `name` (`{input}`, `{context}`: see render.ts);
 * - `{answer}` where the target goes: everything after it is learned, nothing before it (exactly once);
 * - `{soft:N}` N learned vectors; `{soft:"words"}` as many as the words' tokens, started from their
 *   embeddings; `{soft:NAME:N}` / `{soft:NAME:"words"}` a named span, one tensor wherever it appears;
 * - `{code:NAME}` / `{code:NAME:N}` a learned control code: one span of N vectors (default 8) per value
 *   of the example's field NAME, chosen at inference with `--code NAME=value`;
 * - `{{` and `}}` are literal braces; everything else (`[TONE: formal]` included) is plain text.
 *
 * The parser only reads: it evaluates nothing, and every error is a TemplateError with a line and column.
 */
import { SoftpromptError } from "../util/errors.js";

export type Segment =
  | { kind: "text"; text: string }
  | { kind: "slot"; name: string; at: Position }
  | { kind: "answer"; at: Position }
  | { kind: "soft"; span: string; at: Position }
  | { kind: "code"; name: string; at: Position };

/** 1-based line and column of a segment in the template. */
export interface Position {
  line: number;
  column: number;
}

/** A named span: its length, or the words that start it (length: their token count, known with a tokenizer). */
export interface SoftSpan {
  name: string;
  length?: number;
  initText?: string;
  at: Position;
}

export interface Template {
  /** The template text as written (saved with an adapter, so it reproduces the layout exactly). */
  source: string;
  /** Where it came from, for errors. */
  file: string;
  segments: Segment[];
  /** Every soft span by name, in order of first appearance (unnamed ones are named `#1`, `#2`, …). */
  spans: Map<string, SoftSpan>;
  /** Learned control codes by name: vectors per value. */
  codes: Map<string, { length: number; at: Position }>;
}

/** A template's own syntax error: the file, line and column where it is. */
export class TemplateError extends SoftpromptError {
  constructor(
    message: string,
    readonly file: string,
    readonly line: number,
    readonly column: number,
  ) {
    super("usage", `column ${column}: ${message}`, { file, line });
    this.name = "TemplateError";
  }
}

export const DEFAULT_CODE_LENGTH = 8;
/** No span is longer (a guard against a typo such as {soft:20000000}). */
export const MAX_SPAN_LENGTH = 4096;
const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** Parse a template's text; `file` names it in errors. */
export function parseTemplate(source: string, file = "<template>"): Template {
  const segments: Segment[] = [];
  const spans = new Map<string, SoftSpan>();
  const codes = new Map<string, { length: number; at: Position }>();
  // Line and column of every offset, computed as the scan moves forward.
  const positionOf = (offset: number): Position => {
    const before = source.slice(0, offset);
    const lastBreak = before.lastIndexOf("\n");
    return { line: before.split("\n").length, column: offset - lastBreak };
  };
  const error = (message: string, offset: number): never => {
    const { line, column } = positionOf(offset);
    throw new TemplateError(message, file, line, column);
  };

  let text = "";
  let answerAt: number | undefined;
  let unnamed = 0;
  let i = 0;
  while (i < source.length) {
    const c = source[i];
    if ((c === "{" || c === "}") && source[i + 1] === c) {
      text += c; // {{ or }}: a literal brace
      i += 2;
      continue;
    }
    if (c === "}") error("a '}' closes nothing (write }} for a literal brace)", i);
    if (c !== "{") {
      text += c;
      i++;
      continue;
    }
    const end = closingBrace(source, i, error);
    const body = source.slice(i + 1, end);
    const at = positionOf(i);
    if (text !== "") segments.push({ kind: "text", text });
    text = "";
    const segment = parseBody(body, at, i, error);
    if (segment.kind === "answer") {
      if (answerAt !== undefined) error(`{answer} appears twice (first at column ${positionOf(answerAt).column} of line ${positionOf(answerAt).line}); a template has one`, i);
      answerAt = i;
    } else if ((segment.kind === "soft" || segment.kind === "code") && answerAt !== undefined) {
      error(`a ${segment.kind} span after {answer}: what follows the answer is learned text, so soft spans go before it`, i);
    }
    if (segment.kind === "soft") {
      const span = { ...segment.span, name: segment.span.name ?? `#${++unnamed}` };
      const known = spans.get(span.name);
      if (known === undefined) spans.set(span.name, { name: span.name, length: span.length, initText: span.initText, at });
      else if (known.length !== span.length || known.initText !== span.initText) {
        error(`soft span "${span.name}" was declared at line ${known.at.line}, column ${known.at.column} as ${describeSpan(known)}; here it is ${describeSpan(span)} (a named span is one tensor: give it one length)`, i);
      }
      segments.push({ kind: "soft", span: span.name, at });
    } else if (segment.kind === "code") {
      const known = codes.get(segment.name);
      if (known !== undefined && known.length !== segment.length) {
        error(`code "${segment.name}" was declared at line ${known.at.line}, column ${known.at.column} with ${known.length} vectors; here with ${segment.length}`, i);
      }
      codes.set(segment.name, { length: segment.length, at });
      segments.push({ kind: "code", name: segment.name, at });
    } else segments.push(segment);
    i = end + 1;
  }
  if (text !== "") segments.push({ kind: "text", text });
  if (answerAt === undefined) error("no {answer}: mark where the target goes (everything after it is learned)", source.length);
  return { source, file, segments, spans, codes };
}

/** The offset of the `}` closing the `{` at `open`; quotes may hold braces. */
function closingBrace(source: string, open: number, error: (message: string, offset: number) => never): number {
  let inQuote = false;
  for (let j = open + 1; j < source.length; j++) {
    const c = source[j];
    if (inQuote) {
      if (c === "\\") j++;
      else if (c === '"') inQuote = false;
      else if (c === "\n") error("a quoted text does not end on its line", j);
      continue;
    }
    if (c === '"') inQuote = true;
    else if (c === "}") return j;
    else if (c === "{") error("a '{' inside braces: the '{' before it is not closed (write {{ for a literal brace)", j);
    else if (c === "\n") break;
  }
  return error("a '{' is not closed on its line (write {{ for a literal brace)", open);
}

type Parsed =
  | Extract<Segment, { kind: "slot" } | { kind: "answer" }>
  | { kind: "code"; name: string; length: number; at: Position }
  | { kind: "soft"; span: { name?: string; length?: number; initText?: string } };

function parseBody(body: string, at: Position, offset: number, error: (message: string, offset: number) => never): Parsed {
  const fail = (message: string): never => error(message, offset);
  if (body === "answer") return { kind: "answer", at };
  const [head, ...rest] = splitOutsideQuotes(body);
  if (head === "soft") {
    if (rest.length === 0 || rest.length > 2) fail(`expected {soft:N}, {soft:"words"}, {soft:NAME:N} or {soft:NAME:"words"}, got {${body}}`);
    const name = rest.length === 2 ? rest[0] : undefined;
    if (name !== undefined && !NAME.test(name)) fail(`a span name is a letter or _ then letters, digits, _ . or -; got "${name}"`);
    const size = rest[rest.length - 1];
    if (size.startsWith('"')) return { kind: "soft", span: { name, initText: quoted(size, fail) } };
    return { kind: "soft", span: { name, length: spanLength(size, "soft span", fail) } };
  }
  if (head === "code") {
    if (rest.length === 0 || rest.length > 2) fail(`expected {code:NAME} or {code:NAME:N}, got {${body}}`);
    if (!NAME.test(rest[0])) fail(`a code name is a letter or _ then letters, digits, _ . or -; got "${rest[0]}"`);
    const length = rest.length === 2 ? spanLength(rest[1], "code", fail) : DEFAULT_CODE_LENGTH;
    return { kind: "code", name: rest[0], length, at };
  }
  if (rest.length > 0) fail(`unknown kind "${head}" in {${body}}: expected {soft:…} or {code:…}`);
  if (!NAME.test(body)) fail(`expected a slot name (a letter or _ then letters, digits, _ . or -), {answer}, {soft:…} or {code:…}; got {${body}}`);
  return { kind: "slot", name: body, at };
}

function spanLength(text: string, what: string, fail: (message: string) => never): number {
  if (!/^\d+$/.test(text)) fail(`a ${what}'s length is a whole number of vectors, got "${text}"`);
  const n = Number(text);
  if (n === 0) fail(`a ${what} of length 0 holds nothing; give at least 1 vector`);
  if (n > MAX_SPAN_LENGTH) fail(`a ${what} of ${n} vectors is longer than ${MAX_SPAN_LENGTH}`);
  return n;
}

/** A JSON string (so `\"` and `\\` escape); its words start the span, so it must hold some. */
function quoted(text: string, fail: (message: string) => never): string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    fail(`expected a quoted text such as "Classify the review", got ${text}`);
  }
  if (typeof value !== "string" || value.trim() === "") fail("the words that start a soft span must not be empty");
  return value as string;
}

/** Split on ':' outside double quotes. */
function splitOutsideQuotes(body: string): string[] {
  const parts: string[] = [];
  let part = "";
  let inQuote = false;
  for (let j = 0; j < body.length; j++) {
    const c = body[j];
    if (inQuote && c === "\\") {
      part += c + (body[j + 1] ?? "");
      j++;
      continue;
    }
    if (c === '"') inQuote = !inQuote;
    if (c === ":" && !inQuote) {
      parts.push(part);
      part = "";
    } else part += c;
  }
  parts.push(part);
  return parts;
}

function describeSpan(span: { length?: number; initText?: string }): string {
  return span.length !== undefined ? `${span.length} vectors` : `started from ${JSON.stringify(span.initText)}`;
}
