/**
 * One example through a template: token ids, the learned labels, and where soft vectors go.
 *
 * Tokenization, explicitly: the text between two soft spans (literal text and slot values together) is
 * encoded as one piece; the answer and any text after it are encoded as one more piece, then the EOS is
 * appended and learned, as prompt/completion rows are (src/data/tokenize.ts: prompt and completion
 * encoded separately). The tokenizer's special prefix (BOS) comes before the first written token, so
 * `{soft:N}{input}{answer}` renders exactly as prompt tuning sees `{"prompt","completion"}`.
 *
 * Slots read the row's fields; besides, `{input}` is a prompt row's prompt, and for chat rows the last
 * user turn; `{context}` is the optional `context` field then the earlier turns as `role: content` lines;
 * `{chat}` is the earlier turns and the last user turn through the model's chat template (with the
 * generation prompt). `{answer}` is the completion, or a chat's last assistant turn.
 *
 * Nothing is cut silently: when a chat row does not fit, its oldest earlier turns (system turns kept)
 * are dropped first and counted; any other row that does not fit is an error.
 */
import { fail, type ErrorPlace } from "../util/errors.js";
import type { ChatTurn, Example } from "../data/example.js";
import { IGNORE_INDEX, type DataTokenizer } from "../data/tokenize.js";
import type { Template } from "./parse.js";
import { codeKey, type TableLayout } from "./layout.js";

export interface RenderOptions {
  /** Longest row in tokens (soft vectors included). */
  maxLength: number;
  /** Learn an EOS after the answer (default true), as prompt/completion rows do. */
  appendEos?: boolean;
  /** Code values chosen at inference (`--code NAME=value`), over the rows' own fields. */
  codes?: ReadonlyMap<string, string>;
}

/** A rendered row: ids (a pad id where a soft vector goes), labels, and per position the table row of its soft vector or -1. */
export interface RenderedRow {
  inputIds: number[];
  labels: number[];
  softIndex: number[];
  /** Earlier chat turns dropped so the row fits. */
  droppedTurns: number;
}

/** A row through the whole template: what training and the loss see. */
export function renderExample(template: Template, layout: TableLayout, example: Example, tokenizer: DataTokenizer, options: RenderOptions): RenderedRow {
  return fitTurns(example, options, (earlierKept) => {
    const values = slotValues(example, earlierKept, tokenizer);
    const before = renderBefore(template, layout, example, values, tokenizer, options);
    const target = renderTarget(template, example, values, tokenizer, options);
    // Nothing written before the answer: the special prefix (never learned) goes before it.
    const prefix = before.softIndex.every((s) => s >= 0) ? tokenizer.specialPrefixIds : [];
    const unlearned = [...before.inputIds, ...prefix];
    return {
      inputIds: [...unlearned, ...target],
      labels: [...unlearned.map(() => IGNORE_INDEX), ...target],
      softIndex: [...before.softIndex, ...prefix.map(() => -1), ...target.map(() => -1)],
    };
  });
}

/** A row up to `{answer}`: what generation continues from (its answer is not read). */
export function renderPrompt(template: Template, layout: TableLayout, example: Example, tokenizer: DataTokenizer, options: RenderOptions): Omit<RenderedRow, "labels"> {
  return fitTurns(example, options, (earlierKept) => renderBefore(template, layout, example, slotValues(example, earlierKept, tokenizer), tokenizer, options));
}

/** Render with all earlier turns, then without the oldest ones until the row fits. */
function fitTurns<R extends { inputIds: number[] }>(example: Example, options: RenderOptions, render: (earlierKept: (turns: ChatTurn[]) => ChatTurn[]) => R): R & { droppedTurns: number } {
  const droppable = example.kind === "chat" ? splitChat(example).earlier.filter((t) => t.role !== "system").length : 0;
  for (let dropped = 0; ; dropped++) {
    const row = render((turns) => dropOldest(turns, dropped));
    if (row.inputIds.length <= options.maxLength) return { ...row, droppedTurns: dropped };
    if (dropped >= droppable) {
      const note = droppable > 0 ? ` even with all ${droppable} earlier turns dropped` : "";
      return fail("data", `the row through the template is ${row.inputIds.length} tokens${note}, more than maxLength ${options.maxLength}; shorten it or raise maxLength (template rows are never cut)`, placeOf(example));
    }
  }
}

function dropOldest(turns: ChatTurn[], count: number): ChatTurn[] {
  let left = count;
  return turns.filter((t) => t.role === "system" || left-- <= 0);
}

interface ChatParts {
  earlier: ChatTurn[];
  input?: ChatTurn;
  /** Absent when the chat ends with a user turn (generation: the reply is to come). */
  answer?: ChatTurn;
}

/** A chat's closing assistant turn (the answer), the user turn before it (the input) and the turns before that. */
function splitChat(example: Extract<Example, { kind: "chat" }>): ChatParts {
  const { messages } = example;
  const end = messages.at(-1)?.role === "assistant" ? messages.length - 1 : messages.length;
  const before = messages.slice(0, end);
  const inputAt = before.map((m) => m.role).lastIndexOf("user");
  return { earlier: inputAt < 0 ? before : before.slice(0, inputAt), input: inputAt < 0 ? undefined : before[inputAt], answer: messages[end] };
}

/** The value of a slot (undefined: the row has none), with earlier chat turns as `earlierKept` leaves them. */
type SlotValues = (name: string) => string | undefined;

function slotValues(example: Example, earlierKept: (turns: ChatTurn[]) => ChatTurn[], tokenizer: DataTokenizer): SlotValues {
  const chat = example.kind === "chat" ? splitChat(example) : undefined;
  const earlier = chat === undefined ? [] : earlierKept(chat.earlier);
  return (name) => {
    const field = fieldText(example, name);
    switch (name) {
      case "input":
        return field ?? (example.kind === "prompt" ? example.prompt : chat?.input?.content);
      case "context":
        if (chat === undefined) return field;
        return (field === undefined ? "" : `${field}\n`) + earlier.map((t) => `${t.role}: ${t.content}\n`).join("");
      case "chat":
        return chat === undefined ? field : tokenizer.applyChatTemplate([...earlier, ...(chat.input === undefined ? [] : [chat.input])], { addGenerationPrompt: true });
      case "answer":
        return example.kind === "prompt" ? example.completion : chat?.answer?.content;
      default:
        return field;
    }
  };
}

function fieldText(example: Example, name: string): string | undefined {
  const value = example.fields?.[name];
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (value === undefined || value === null) return undefined;
  return fail("data", `the slot {${name}} needs text, but the field holds ${Array.isArray(value) ? "a list" : "an object"}`, { ...placeOf(example), field: name });
}

function slot(values: SlotValues, name: string, template: Template, at: { line: number; column: number }, example: Example): string {
  const value = values(name);
  if (value === undefined) {
    fail("data", `the template's slot {${name}} (${template.file}:${at.line}, column ${at.column}) has no value: the row has no field "${name}"`, { ...placeOf(example), field: name });
  }
  return value;
}

/** Ids and soft indices before `{answer}`. */
function renderBefore(template: Template, layout: TableLayout, example: Example, values: SlotValues, tokenizer: DataTokenizer, options: RenderOptions): { inputIds: number[]; softIndex: number[] } {
  const inputIds: number[] = [];
  const softIndex: number[] = [];
  let run = "";
  const flush = () => {
    if (run === "") return;
    const ids = tokenizer.encode(run, { addSpecialTokens: false });
    const prefix = softIndex.every((s) => s >= 0) ? tokenizer.specialPrefixIds : []; // before the first written token
    for (const id of [...prefix, ...ids]) {
      inputIds.push(id);
      softIndex.push(-1);
    }
    run = "";
  };
  const soft = (key: string) => {
    flush();
    const block = layout.blocks.get(key)!;
    for (let j = 0; j < block.length; j++) {
      inputIds.push(tokenizer.eosTokenIds[0] ?? 0); // any valid id: the soft vector replaces its embedding
      softIndex.push(block.offset + j);
    }
  };
  for (const segment of template.segments) {
    if (segment.kind === "answer") break;
    if (segment.kind === "text") run += segment.text;
    else if (segment.kind === "slot") run += slot(values, segment.name, template, segment.at, example);
    else if (segment.kind === "soft") soft(segment.span);
    else soft(codeKey(segment.name, codeValue(segment.name, layout, example, options)));
  }
  flush();
  return { inputIds, softIndex };
}

/** The answer and what follows it, encoded as one piece, then the EOS. */
function renderTarget(template: Template, example: Example, values: SlotValues, tokenizer: DataTokenizer, options: RenderOptions): number[] {
  const start = template.segments.findIndex((s) => s.kind === "answer");
  const answer = template.segments[start] as Extract<Template["segments"][number], { kind: "answer" }>;
  let text = slot(values, "answer", template, answer.at, example);
  for (const segment of template.segments.slice(start + 1)) {
    if (segment.kind === "text") text += segment.text;
    else if (segment.kind === "slot") text += slot(values, segment.name, template, segment.at, example);
  }
  const ids = tokenizer.encode(text, { addSpecialTokens: false });
  if (ids.length === 0) fail("data", "the answer encodes to no tokens; expected text for the model to learn", { ...placeOf(example), field: "answer" });
  const eos = tokenizer.eosTokenIds[0];
  return (options.appendEos ?? true) && eos !== undefined && ids.at(-1) !== eos ? [...ids, eos] : ids;
}

/** The value of a learned code for a row: chosen at inference, else the row's field; one the adapter has. */
function codeValue(name: string, layout: TableLayout, example: Example, options: RenderOptions): string {
  const chosen = options.codes?.get(name);
  const value = chosen ?? fieldText(example, name);
  const place: ErrorPlace = chosen !== undefined ? { field: `--code ${name}` } : { ...placeOf(example), field: name };
  if (value === undefined) fail("data", `the learned code {code:${name}} needs a value: the row has no field "${name}" (at inference: --code ${name}=VALUE)`, place);
  const known = layout.codeValues.get(name) ?? [];
  if (!known.includes(value)) fail(chosen !== undefined ? "usage" : "data", `code ${name} has no learned value ${JSON.stringify(value)}; learned: ${known.map((v) => JSON.stringify(v)).join(", ")}`, place);
  return value;
}

function placeOf(example: Example): ErrorPlace {
  return { file: example.source?.file, line: example.source?.line };
}
