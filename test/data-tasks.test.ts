// Multi-task data: a row's task is read from the field the caller names (JSONL key or CSV column), kept
// through tokenizing, and carried per row on each batch; a malformed task names its line and field.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { datasetTasks, makeBatches, readExamples, tokenizeExamples, type DataTokenizer } from "../src/data/index.js";
import { SoftpromptError } from "../src/util/errors.js";

const dir = mkdtempSync(join(tmpdir(), "softprompt-data-tasks-"));
afterAll(() => rmSync(dir, { recursive: true }));
const write = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

/** One id per character, EOS = 2. */
const chars: DataTokenizer = {
  eosTokenIds: [2],
  specialPrefixIds: [],
  encode: (text) => [...text].map((c) => c.codePointAt(0)!),
  applyChatTemplate: () => "",
};

describe("a row's task", () => {
  const jsonl = [
    '{"prompt":"a","completion":"b","task":"copy"}',
    '{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}],"task":"chat"}',
    '{"text":"plain","task":7}',
    '{"prompt":"c","completion":"d"}',
  ].join("\n");

  it("is read from the named field only when asked, a number read as its name", async () => {
    const path = write("mixed.jsonl", jsonl);
    expect((await readExamples(path)).map((ex) => ex.task)).toEqual([undefined, undefined, undefined, undefined]);
    expect((await readExamples(path, { taskField: "task" })).map((ex) => ex.task)).toEqual(["copy", "chat", "7", undefined]);
    expect((await readExamples(path, { taskField: "skill" })).map((ex) => ex.task)).toEqual([undefined, undefined, undefined, undefined]);
  });

  it("is a CSV column", async () => {
    const path = write("mixed.csv", "prompt,completion,skill,id\n1 2 =,2 1,reverse,a\n3 4 =,3 4,copy,b\n");
    const examples = await readExamples(path, { taskField: "skill" });
    expect(examples.map((ex) => ex.task)).toEqual(["reverse", "copy"]);
    expect(examples[0]).toMatchObject({ kind: "prompt", prompt: "1 2 =", completion: "2 1" });
  });

  it("that is not a name fails with the file, line and field", async () => {
    const path = write("bad.jsonl", '{"prompt":"a","completion":"b","task":"x"}\n{"prompt":"a","completion":"b","task":{"name":"x"}}\n');
    const err = await readExamples(path, { taskField: "task" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SoftpromptError);
    expect((err as SoftpromptError).place).toMatchObject({ file: path, line: 2, field: "task" });
    expect((err as SoftpromptError).message).toMatch(/expected the row's task name \(a non-empty string\), got an object/);
    await expect(readExamples(write("empty.jsonl", '{"text":"t","task":""}\n'), { taskField: "task" })).rejects.toThrow(/non-empty string/);
  });

  it("is kept through tokenizing and carried per row on batches (none: no tasks on the batch)", async () => {
    const examples = await readExamples(write("m.jsonl", jsonl), { taskField: "task" });
    const { items } = tokenizeExamples(examples.filter((ex) => ex.kind !== "chat"), chars, { maxLength: 16 });
    expect(items.map((x) => x.task)).toEqual(["copy", "7", undefined]);
    const [batch] = makeBatches(items, { batchSize: 3, padTokenId: 0, padSide: "right" });
    expect(batch.tasks).toEqual(["copy", "7", undefined]);
    const [plain] = makeBatches(items.slice(2), { batchSize: 3, padTokenId: 0, padSide: "right" });
    expect(plain.tasks).toBeUndefined();
  });

  it("datasetTasks: the sorted tasks; a row without one, or outside those given, fails with its line", async () => {
    const path = write("t.jsonl", '{"text":"a","task":"sort"}\n{"text":"b","task":"copy"}\n{"text":"c","task":"sort"}\n');
    const examples = await readExamples(path, { taskField: "task" });
    expect(datasetTasks(examples, "task")).toEqual(["copy", "sort"]);
    expect(datasetTasks(examples, "task", ["sort", "copy", "x"])).toEqual(["sort", "copy", "x"]);
    expect(() => datasetTasks(examples, "task", ["sort"])).toThrow(/t.jsonl:2, field "task": task "copy" is not one of the tasks given: sort/);
    const untagged = await readExamples(write("u.jsonl", '{"text":"a","task":"x"}\n{"text":"b"}\n'), { taskField: "task" });
    expect(() => datasetTasks(untagged, "task")).toThrow(/u.jsonl:2, field "task": the row names no task/);
  });
});
