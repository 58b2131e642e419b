import { z } from "zod";
import { fail } from "../util/errors.js";
import { parseWith } from "../formats/json.js";

/** Where an example came from, so later errors (tokenizing, truncation) can point at the line. */
export interface SourceLine {
  file: string;
  /** 1-based; for CSV, the line where the record starts. */
  line: number;
}

export type Role = "system" | "user" | "assistant";
export interface ChatTurn {
  role: Role;
  content: string;
}

/** Every shape may name its task (multi-task training: each row uses its own task's prompt). */
export type Example = (
  | { kind: "prompt"; prompt: string; completion: string; source?: SourceLine }
  | { kind: "chat"; messages: ChatTurn[]; source?: SourceLine }
  | { kind: "text"; text: string; source?: SourceLine }
) & {
  task?: string;
  /** The record as read (every field, the shape's own included): template slots, control codes and per-row signals read from it. */
  fields?: Readonly<Record<string, unknown>>;
};

export interface ParseOptions {
  /** Read each row's task from this field (absent: tasks are not read). */
  taskField?: string;
}

export const EXPECTED_SHAPES = 'expected {"prompt","completion"} or {"messages":[{"role","content"},...]} or {"text"}';

export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  return typeof value === "object" ? "an object" : `${typeof value} ${JSON.stringify(value)}`;
}

// Messages say what was found, since "Invalid input" does not help anyone fix a line.
const text = (what: string) =>
  z.string({ error: (iss) => (iss.input === undefined ? "missing" : `expected ${what}, got ${describeValue(iss.input)}`) });

const promptSchema = z.looseObject({
  prompt: text("a string"),
  completion: text("a string").min(1, { error: "is empty; expected the text the model should learn to produce" }),
});

const chatSchema = z.looseObject({
  messages: z
    .array(
      z.looseObject({
        role: z.enum(["system", "user", "assistant"], {
          error: (iss) =>
            iss.input === undefined ? "missing" : `expected "system", "user" or "assistant", got ${describeValue(iss.input)}`,
        }),
        content: text("a string"),
      }, { error: (iss) => `expected {"role","content"}, got ${describeValue(iss.input)}` }),
      { error: (iss) => `expected a list of {"role","content"}, got ${describeValue(iss.input)}` },
    )
    .refine((turns) => turns.some((t) => t.role === "assistant"), {
      error: 'has no "assistant" turn, so there is nothing to learn',
    }),
});

/** A preference pair: two completions of one prompt; the chosen one is the row's completion (see src/data/signals.ts). */
const pairSchema = z.looseObject({
  prompt: text("a string"),
  chosen: text("a string").min(1, { error: "is empty; expected the preferred completion" }),
});

/** A classification row: an input and its label (scored against the verbalizer's words, see src/eval/classify.ts). */
const labelledSchema = z.looseObject({ prompt: text("a string").min(1, { error: "is empty" }) });

const textSchema = z.looseObject({
  text: text("a string").min(1, { error: "is empty" }),
});

/**
 * Turn one parsed record (a JSONL object or a CSV row) into an Example, or fail naming the line and field.
 * The shape is chosen by its keys, first match wins: "messages", then a preference pair "prompt"/"chosen"
 * (its chosen completion is the row's), then a classification row "prompt"/"label" (its prompt is the row's
 * text), then "prompt"/"completion", then "text",
 * so datasets that carry extra columns (an id, a pre-rendered "text") still read as intended.
 */
export function parseExample(record: unknown, source: SourceLine, options: ParseOptions = {}): Example {
  if (typeof record !== "object" || record === null || Array.isArray(record)) {
    fail("data", `got ${describeValue(record)}; ${EXPECTED_SHAPES}`, source);
  }
  const example: Example = { ...parseShape(record, source), fields: record as Record<string, unknown> };
  if (options.taskField === undefined || !(options.taskField in record)) return example;
  return { ...example, task: parseTask((record as Record<string, unknown>)[options.taskField], options.taskField, source) };
}

function parseShape(record: object, source: SourceLine): Example {
  if ("messages" in record) {
    const { messages } = check(chatSchema, record, source);
    return { kind: "chat", messages: messages.map(({ role, content }) => ({ role, content })), source };
  }
  if ("chosen" in record && !("completion" in record)) {
    const { prompt, chosen } = check(pairSchema, record, source);
    return { kind: "prompt", prompt, completion: chosen, source };
  }
  if ("label" in record && "prompt" in record && !("completion" in record)) {
    return { kind: "text", text: check(labelledSchema, record, source).prompt, source };
  }
  if ("prompt" in record || "completion" in record) {
    const { prompt, completion } = check(promptSchema, record, source);
    return { kind: "prompt", prompt, completion, source };
  }
  if ("text" in record) {
    return { kind: "text", text: check(textSchema, record, source).text, source };
  }
  const keys = Object.keys(record).map((k) => JSON.stringify(k));
  fail("data", `found keys ${keys.length > 0 ? keys.join(", ") : "(none)"}; ${EXPECTED_SHAPES}`, source);
}

/** A task is named by a non-empty string (a number is read as its decimal name). */
function parseTask(value: unknown, field: string, source: SourceLine): string {
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  if (typeof value === "string" && value.trim() !== "") return value;
  return fail("data", `expected the row's task name (a non-empty string), got ${describeValue(value)}`, { ...source, field });
}

function check<T>(schema: z.ZodType<T>, record: object, source: SourceLine): T {
  return parseWith(schema, record, "data", { ...source, hint: EXPECTED_SHAPES });
}
