import { describe, it, expect, beforeAll } from "vitest";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import {
  readExamples,
  parseCsv,
  tokenizeExample,
  tokenizeExamples,
  splitTrainValid,
  makeBatches,
  IGNORE_INDEX,
  type DataTokenizer,
  type Example,
  type TokenizedExample,
} from "../src/data/index.js";
import { loadTokenizer, type Tokenizer } from "../src/tokenizer/index.js";
import { SoftpromptError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const shared = resolve(repoRoot, "../shared");
const goldenTokenizerDir = join(shared, "golden/tokenizer");
const smolDir = join(shared, "tokenizers/smollm2-135m-instruct");

const dir = mkdtempSync(join(tmpdir(), "softprompt-data-"));
function writeData(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

async function dataError(path: string): Promise<SoftpromptError> {
  const err = await readExamples(path).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SoftpromptError);
  expect((err as SoftpromptError).code).toBe("data");
  return err as SoftpromptError;
}

/**
 * A stand-in tokenizer: one id per character (its code point), BOS = 1 before every text, EOS = 2,
 * and a ChatML-like template "<|role|>content<|end|>" whose markers are single ids 900..903.
 */
const MARKERS: Record<string, number> = { "<|system|>": 900, "<|user|>": 901, "<|assistant|>": 902, "<|end|>": 903 };
const standIn: DataTokenizer = {
  eosTokenIds: [2],
  specialPrefixIds: [1],
  encode(text, { addSpecialTokens = true } = {}) {
    const ids = text.split(/(<\|[a-z]+\|>)/).flatMap((part) => (part in MARKERS ? [MARKERS[part]] : [...part].map((c) => c.codePointAt(0)!)));
    return addSpecialTokens ? [1, ...ids] : ids;
  },
  applyChatTemplate(messages, { addGenerationPrompt = false } = {}) {
    return messages.map((m) => `<|${m.role}|>${m.content}<|end|>`).join("") + (addGenerationPrompt ? "<|assistant|>" : "");
  },
};
const codes = (s: string) => [...s].map((c) => c.codePointAt(0)!);
const prompt = (p: string, c: string, line = 1): Example => ({ kind: "prompt", prompt: p, completion: c, source: { file: "d.jsonl", line } });

describe("readExamples: JSONL", () => {
  it("reads the three shapes, skipping blank lines and tolerating CRLF and a BOM", async () => {
    const path = writeData(
      "mixed.jsonl",
      "\uFEFF" +
        [
          JSON.stringify({ prompt: "Q: 2+2?\nA:", completion: " 4", id: 7 }),
          "",
          JSON.stringify({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }] }),
          "   ",
          JSON.stringify({ text: "plain text" }),
        ].join("\r\n") +
        "\r\n",
    );
    const examples = await readExamples(path);
    expect(examples).toEqual([
      { kind: "prompt", prompt: "Q: 2+2?\nA:", completion: " 4", source: { file: path, line: 1 }, fields: { prompt: "Q: 2+2?\nA:", completion: " 4", id: 7 } },
      {
        kind: "chat",
        messages: [
          { role: "user", content: "hi" },
          { role: "assistant", content: "hello" },
        ],
        source: { file: path, line: 3 },
        fields: { messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }] },
      },
      { kind: "text", text: "plain text", source: { file: path, line: 5 }, fields: { text: "plain text" } },
    ]);
  });

  it("names the file and line of a line that is not JSON", async () => {
    const path = writeData("bad-json.jsonl", ['{"text": "ok"}', "", '{"text": "unterminated}'].join("\n"));
    const e = await dataError(path);
    expect(e.place).toEqual({ file: path, line: 3 });
    expect(e.message).toContain(`${path}:3: not valid JSON`);
    expect(e.message).toContain('expected {"prompt","completion"} or {"messages":[{"role","content"},...]} or {"text"}');
  });

  it("names the field that has the wrong type", async () => {
    const path = writeData("bad-type.jsonl", ['{"prompt": "a", "completion": "b"}', '{"prompt": 1, "completion": "b"}'].join("\n"));
    const e = await dataError(path);
    expect(e.place).toEqual({ file: path, line: 2, field: "prompt" });
    expect(e.message).toMatch(/:2, field "prompt": expected a string, got number 1; expected \{"prompt","completion"\}/);
  });

  it("names a missing field", async () => {
    const e = await dataError(writeData("missing.jsonl", '{"prompt": "only a prompt"}\n'));
    expect(e.place.line).toBe(1);
    expect(e.place.field).toBe("completion");
    expect(e.message).toMatch(/field "completion": missing/);
  });

  it("names the message and key inside a conversation", async () => {
    const bad = { messages: [{ role: "user", content: "x" }, { role: "bot", content: "y" }] };
    const e = await dataError(writeData("role.jsonl", JSON.stringify(bad)));
    expect(e.place.field).toBe("messages[1].role");
    expect(e.message).toMatch(/expected "system", "user" or "assistant", got string "bot"/);

    const noContent = { messages: [{ role: "user" }, { role: "assistant", content: "y" }] };
    expect((await dataError(writeData("content.jsonl", JSON.stringify(noContent)))).place.field).toBe("messages[0].content");

    const notList = { messages: "hi" };
    expect((await dataError(writeData("notlist.jsonl", JSON.stringify(notList)))).message).toMatch(/field "messages": expected a list/);
  });

  it("rejects a conversation with nothing to learn", async () => {
    const e = await dataError(writeData("noassistant.jsonl", JSON.stringify({ messages: [{ role: "user", content: "x" }] })));
    expect(e.message).toMatch(/field "messages": has no "assistant" turn/);
  });

  it("rejects an empty completion and records of an unknown shape", async () => {
    expect((await dataError(writeData("empty-completion.jsonl", '{"prompt": "p", "completion": ""}'))).message).toMatch(
      /field "completion": is empty/,
    );
    const unknown = await dataError(writeData("unknown.jsonl", '{"question": "q", "answer": "a"}'));
    expect(unknown.message).toMatch(/:1: found keys "question", "answer"; expected \{"prompt","completion"\}/);
    const array = await dataError(writeData("array.jsonl", "[1, 2]"));
    expect(array.message).toMatch(/:1: got a list; expected/);
  });

  it("fails clearly on an empty dataset or an unknown extension", async () => {
    expect((await dataError(writeData("empty.jsonl", "\n\n  \n"))).message).toMatch(/has no examples/);
    expect((await dataError(writeData("data.parquet", ""))).message).toMatch(/expected a \.jsonl, \.ndjson or \.csv file/);
    expect((await dataError(join(dir, "absent.jsonl"))).message).toMatch(/cannot read the dataset/);
  });
});

describe("readExamples: CSV", () => {
  it("handles quoting: commas, doubled quotes, line breaks inside fields, CRLF", async () => {
    const path = writeData(
      "qa.csv",
      'prompt,completion,source\r\n"Say ""hi"", then stop",hi,web\r\n"multi\nline\nprompt","a, b",x\r\n\r\nplain,"",y\r\n',
    );
    // The last record has an empty completion, which is rejected; read the records before it from a copy first.
    const good = writeData("qa-good.csv", 'prompt,completion,source\r\n"Say ""hi"", then stop",hi,web\r\n"multi\nline\nprompt","a, b",x\r\n\r\n');
    expect(await readExamples(good)).toEqual([
      // Every column is kept in `fields`, the extra "source" column too (template slots read them).
      { kind: "prompt", prompt: 'Say "hi", then stop', completion: "hi", source: { file: good, line: 2 }, fields: { prompt: 'Say "hi", then stop', completion: "hi", source: "web" } },
      { kind: "prompt", prompt: "multi\nline\nprompt", completion: "a, b", source: { file: good, line: 3 }, fields: { prompt: "multi\nline\nprompt", completion: "a, b", source: "x" } },
    ]);
    const e = await dataError(path);
    // The multi-line record spans lines 3-5 and a blank line 6 follows, so the bad record starts on line 7.
    expect(e.place).toEqual({ file: path, line: 7, field: "completion" });
  });

  it("reads a text column", async () => {
    const path = writeData("text.csv", "text\nfirst document\n\"second, with comma\"\n");
    expect((await readExamples(path)).map((e) => (e.kind === "text" ? e.text : ""))).toEqual(["first document", "second, with comma"]);
  });

  it("names the line of a row with the wrong number of fields", async () => {
    const e = await dataError(writeData("ragged.csv", "prompt,completion\na,b\nc,d,e\n"));
    expect(e.place).toEqual({ file: join(dir, "ragged.csv"), line: 3 });
    expect(e.message).toMatch(/has 3 fields; expected 2/);
  });

  it("rejects a header without the known columns, an unclosed quote, and text after a closing quote", async () => {
    expect((await dataError(writeData("header.csv", "question,answer\nq,a\n"))).message).toMatch(
      /expected "prompt" and "completion", or "text"/,
    );
    const unclosed = await dataError(writeData("unclosed.csv", 'prompt,completion\na,b\n"c,d\ne,f\n'));
    expect(unclosed.place.line).toBe(3);
    expect(unclosed.message).toMatch(/never closed/);
    const after = await dataError(writeData("after.csv", 'prompt,completion\n"a"x,b\n'));
    expect(after.place.line).toBe(2);
    expect(after.message).toMatch(/unexpected "x" after a closing quote/);
  });

  it("parses edge cases of the CSV grammar", () => {
    expect(parseCsv("a,b\n1,\n,2\n\"\"\n", "f.csv")).toEqual([
      { line: 1, fields: ["a", "b"] },
      { line: 2, fields: ["1", ""] },
      { line: 3, fields: ["", "2"] },
      { line: 4, fields: [""] }, // a quoted empty value is a record, unlike a blank line
    ]);
    expect(parseCsv("x\ry\r", "f.csv")).toEqual([
      { line: 1, fields: ["x"] },
      { line: 2, fields: ["y"] },
    ]);
    expect(parseCsv("", "f.csv")).toEqual([]);
    expect(parseCsv('say "what",ok', "f.csv")).toEqual([{ line: 1, fields: ['say "what"', "ok"] }]);
  });
});

describe("tokenizeExample with a stand-in tokenizer", () => {
  it("prompt/completion: BOS ++ prompt ++ completion ++ EOS, learning only the completion and EOS", () => {
    const { inputIds, labels, truncated } = tokenizeExample(prompt("ab", "cd"), standIn, { maxLength: 32 });
    expect(inputIds).toEqual([1, ...codes("ab"), ...codes("cd"), 2]);
    expect(labels).toEqual([IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, ...codes("cd"), 2]);
    expect(truncated).toBe(false);
    // Aligned: wherever a label is set it equals the input id at the same position (the model shifts).
    labels.forEach((label, t) => label !== IGNORE_INDEX && expect(label).toBe(inputIds[t]));
  });

  it("leaves out EOS when asked, or when the completion already ends with it", () => {
    expect(tokenizeExample(prompt("a", "b"), standIn, { maxLength: 8, appendEos: false }).inputIds).toEqual([1, 97, 98]);
    const endsWithEos: DataTokenizer = { ...standIn, encode: (t, o) => [...standIn.encode(t, o), 2] };
    expect(tokenizeExample(prompt("a", "b"), endsWithEos, { maxLength: 8 }).inputIds).toEqual([1, 97, 2, 98, 2]);
  });

  it("cuts the prompt from the left, keeps BOS, and counts the truncated examples", () => {
    const long = prompt("0123456789", "xy");
    const { inputIds, labels, truncated } = tokenizeExample(long, standIn, { maxLength: 7 });
    // BOS and the 3 tokens to learn leave room for the last 3 prompt tokens.
    expect(inputIds).toEqual([1, ...codes("789"), ...codes("xy"), 2]);
    expect(labels.slice(-3)).toEqual([...codes("xy"), 2]);
    expect(truncated).toBe(true);
    const result = tokenizeExamples([long, prompt("a", "b"), prompt("0123456", "z")], standIn, { maxLength: 7 });
    expect(result.truncated).toBe(2);
    expect(result.items.every((i) => i.inputIds.length <= 7)).toBe(true);
  });

  it("fails, naming the line, when the completion alone does not fit or encodes to nothing", () => {
    expect(() => tokenizeExample(prompt("p", "abcdefgh", 12), standIn, { maxLength: 8 })).toThrowError(
      /d\.jsonl:12, field "completion": the completion alone is 10 tokens, more than maxLength 8/,
    );
    const silent: DataTokenizer = { ...standIn, encode: (t, o) => (t === "   " ? [] : standIn.encode(t, o)) };
    expect(() => tokenizeExample(prompt("p", "   ", 4), silent, { maxLength: 8 })).toThrowError(
      /d\.jsonl:4, field "completion": the completion encodes to no tokens/,
    );
  });

  it("text: every token is learned; too long is cut at the end", () => {
    const ex: Example = { kind: "text", text: "hello" };
    expect(tokenizeExample(ex, standIn, { maxLength: 16 })).toEqual({
      inputIds: [1, ...codes("hello"), 2],
      labels: [1, ...codes("hello"), 2],
      truncated: false,
    });
    expect(tokenizeExample(ex, standIn, { maxLength: 4 })).toEqual({ inputIds: [1, 104, 101, 108], labels: [1, 104, 101, 108], truncated: true });
  });

  it("chat: learns the assistant turns (with their end marker) and nothing else", () => {
    const ex: Example = {
      kind: "chat",
      messages: [
        { role: "system", content: "s" },
        { role: "user", content: "u1" },
        { role: "assistant", content: "a1" },
        { role: "user", content: "u2" },
        { role: "assistant", content: "a2" },
      ],
    };
    const { inputIds, labels } = tokenizeExample(ex, standIn, { maxLength: 64 });
    const S = 900, U = 901, A = 902, E = 903;
    expect(inputIds).toEqual([S, 115, E, U, 117, 49, E, A, 97, 49, E, U, 117, 50, E, A, 97, 50, E]);
    const learned = labels.map((l, t) => (l === IGNORE_INDEX ? null : inputIds[t]));
    expect(learned).toEqual([null, null, null, null, null, null, null, null, 97, 49, E, null, null, null, null, null, 97, 50, E]);
    expect(labels.filter((l) => l !== IGNORE_INDEX)).toEqual([97, 49, E, 97, 50, E]);
  });

  it("chat: cuts earlier turns from the left but never the last reply", () => {
    const ex: Example = {
      kind: "chat",
      messages: [
        { role: "user", content: "long question" },
        { role: "assistant", content: "a1" },
        { role: "user", content: "q" },
        { role: "assistant", content: "ok" },
      ],
      source: { file: "c.jsonl", line: 5 },
    };
    const full = tokenizeExample(ex, standIn, { maxLength: 100 });
    const cut = tokenizeExample(ex, standIn, { maxLength: 8 });
    expect(cut.truncated).toBe(true);
    expect(cut.inputIds).toEqual(full.inputIds.slice(-8));
    expect(cut.labels).toEqual(full.labels.slice(-8));
    // The last reply is "ok" + <|end|>: 3 tokens fit exactly, 2 do not.
    expect(tokenizeExample(ex, standIn, { maxLength: 3 }).inputIds).toEqual([111, 107, 903]);
    expect(() => tokenizeExample(ex, standIn, { maxLength: 2 })).toThrowError(/c\.jsonl:5, field "messages": the last assistant turn/);
  });

  it("chat: explains a template that does not render prefix by prefix", () => {
    const unstable: DataTokenizer = {
      ...standIn,
      applyChatTemplate: (messages, opts) => `${messages.length}` + standIn.applyChatTemplate(messages, opts),
    };
    const ex: Example = {
      kind: "chat",
      messages: [
        { role: "user", content: "q" },
        { role: "assistant", content: "a" },
      ],
      source: { file: "c.jsonl", line: 2 },
    };
    expect(() => tokenizeExample(ex, unstable, { maxLength: 64 })).toThrowError(/c\.jsonl:2, field "messages\[1\]": the chat template does not render/);
  });
});

describe.skipIf(!existsSync(join(goldenTokenizerDir, "tokenizer.json")))("tokenizeExample with the golden tokenizer", () => {
  let tok: Tokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer(goldenTokenizerDir);
  });

  it("prompt/completion encodes the parts separately and learns completion + <|endoftext|>", () => {
    const ex = prompt("Question: what is 2+2?\nAnswer:", " four");
    const { inputIds, labels } = tokenizeExample(ex, tok, { maxLength: 128 });
    const promptIds = tok.encode(ex.kind === "prompt" ? ex.prompt : "", { addSpecialTokens: false });
    const completionIds = tok.encode(" four", { addSpecialTokens: false });
    expect(inputIds).toEqual([...promptIds, ...completionIds, 511]);
    expect(labels.slice(0, promptIds.length).every((l) => l === IGNORE_INDEX)).toBe(true);
    expect(tok.decode(labels.filter((l) => l !== IGNORE_INDEX))).toBe(" four<|endoftext|>");
  });

  it("truncation keeps the end of the prompt", () => {
    const ex = prompt("one two three four five six seven eight nine ten", " eleven");
    const full = tokenizeExample(ex, tok, { maxLength: 128 });
    const cut = tokenizeExample(ex, tok, { maxLength: 12 });
    expect(cut.truncated).toBe(true);
    expect(cut.inputIds).toEqual(full.inputIds.slice(-12));
    expect(tok.decode(cut.labels.filter((l) => l !== IGNORE_INDEX))).toBe(" eleven<|endoftext|>");
  });
});

describe.skipIf(!existsSync(join(smolDir, "tokenizer.json")))("chat labels with SmolLM2's template", () => {
  it("learns each assistant reply and its <|im_end|>\\n, encoding the conversation in one piece", async () => {
    const tok = await loadTokenizer(smolDir);
    const messages = [
      { role: "user" as const, content: "Name a colour." },
      { role: "assistant" as const, content: "Blue." },
      { role: "user" as const, content: "Another?" },
      { role: "assistant" as const, content: "Green, naturally." },
    ];
    const { inputIds, labels } = tokenizeExample({ kind: "chat", messages }, tok, { maxLength: 256 });
    expect(inputIds).toEqual(tok.encode(tok.applyChatTemplate(messages), { addSpecialTokens: false }));
    // Split the learned positions into runs and decode each.
    const runs: number[][] = [];
    labels.forEach((l, t) => {
      if (l === IGNORE_INDEX) return;
      if (t > 0 && labels[t - 1] !== IGNORE_INDEX) runs.at(-1)!.push(l);
      else runs.push([l]);
    });
    expect(runs.map((r) => tok.decode(r))).toEqual(["Blue.<|im_end|>\n", "Green, naturally.<|im_end|>\n"]);
  });
});

describe("splitTrainValid", () => {
  const items = Array.from({ length: 100 }, (_, i) => i);

  it("is reproducible, disjoint, complete, and keeps file order", () => {
    const a = splitTrainValid(items, { validFraction: 0.1, seed: 42 });
    const b = splitTrainValid(items, { validFraction: 0.1, seed: 42 });
    expect(a).toEqual(b);
    expect(a.valid).toHaveLength(10);
    expect([...a.train, ...a.valid].sort((x, y) => x - y)).toEqual(items);
    expect(a.valid).toEqual([...a.valid].sort((x, y) => x - y));
    expect(splitTrainValid(items, { validFraction: 0.1, seed: 43 }).valid).not.toEqual(a.valid);
  });

  it("holds out at least one example for a positive fraction, and always leaves one to train on", () => {
    expect(splitTrainValid([1, 2, 3], { validFraction: 0.01, seed: 0 }).valid).toHaveLength(1);
    expect(splitTrainValid([1], { validFraction: 0.5, seed: 0 })).toEqual({ train: [1], valid: [] });
    expect(splitTrainValid([1, 2], { validFraction: 0, seed: 0 })).toEqual({ train: [1, 2], valid: [] });
    expect(() => splitTrainValid(items, { validFraction: 1, seed: 0 })).toThrowError(/validFraction must be in \[0, 1\)/);
  });
});

describe("makeBatches", () => {
  const items: TokenizedExample[] = [
    { inputIds: [5, 6, 7], labels: [IGNORE_INDEX, 6, 7] },
    { inputIds: [8], labels: [8] },
    { inputIds: [9, 10], labels: [IGNORE_INDEX, 10] },
  ];

  it("pads each batch on the right to its own longest row", () => {
    const [first, second] = makeBatches(items, { batchSize: 2, padTokenId: 0, padSide: "right" });
    expect(first.batchSize).toBe(2);
    expect(first.seqLen).toBe(3);
    expect([...first.inputIds]).toEqual([5, 6, 7, 8, 0, 0]);
    expect([...first.attentionMask]).toEqual([1, 1, 1, 1, 0, 0]);
    expect([...first.labels]).toEqual([IGNORE_INDEX, 6, 7, 8, IGNORE_INDEX, IGNORE_INDEX]);
    expect(first.inputIds).toBeInstanceOf(Int32Array);
    // The last batch is smaller and only as long as its own rows.
    expect(second.batchSize).toBe(1);
    expect(second.seqLen).toBe(2);
    expect([...second.inputIds]).toEqual([9, 10]);
  });

  it("pads on the left for generation", () => {
    const [batch] = makeBatches(items, { batchSize: 3, padTokenId: 99, padSide: "left" });
    expect([...batch.inputIds]).toEqual([5, 6, 7, 99, 99, 8, 99, 9, 10]);
    expect([...batch.attentionMask]).toEqual([1, 1, 1, 0, 0, 1, 0, 1, 1]);
    expect([...batch.labels]).toEqual([IGNORE_INDEX, 6, 7, IGNORE_INDEX, IGNORE_INDEX, 8, IGNORE_INDEX, IGNORE_INDEX, 10]);
  });

  it("shuffles reproducibly with a seed and keeps every example", () => {
    const many = Array.from({ length: 20 }, (_, i) => ({ inputIds: [i], labels: [i] }));
    const order = (seed: number) => makeBatches(many, { batchSize: 4, padTokenId: 0, padSide: "right", shuffle: true, seed }).flatMap((b) => [...b.inputIds]);
    expect(order(1)).toEqual(order(1));
    expect(order(1)).not.toEqual(order(2));
    expect([...order(1)].sort((a, b) => a - b)).toEqual(many.map((m) => m.inputIds[0]));
    // A caller-owned generator gives a fresh order each epoch.
    const rng = new Rng(7);
    const epoch = () => makeBatches(many, { batchSize: 4, padTokenId: 0, padSide: "right", shuffle: true, rng }).flatMap((b) => [...b.inputIds]);
    expect(epoch()).not.toEqual(epoch());
  });

  it("rejects a bad batch size and misaligned labels", () => {
    expect(() => makeBatches(items, { batchSize: 0, padTokenId: 0, padSide: "right" })).toThrowError(/batchSize must be a positive integer/);
    expect(() => makeBatches([{ inputIds: [1, 2], labels: [1] }], { batchSize: 1, padTokenId: 0, padSide: "right" })).toThrowError(
      /2 input ids but 1 labels/,
    );
    expect(makeBatches([], { batchSize: 2, padTokenId: 0, padSide: "right" })).toEqual([]);
  });
});
