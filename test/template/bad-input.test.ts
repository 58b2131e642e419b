// Bad templates and data through `train`: each a clear error naming the file, line and column (or the
// data row and field), raised before anything is written.
import { afterAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { train } from "../../src/workflows.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const DATA = fileURLToPath(new URL("../../examples/data/reverse.valid.jsonl", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "softprompt-template-bad-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function trainWith(template: string, data = DATA) {
  const file = join(dir, "bad.tmpl");
  writeFileSync(file, template);
  const output = join(dir, "out");
  const run = train({ model: MODEL, data, valid: data, output, template: file, steps: 2 });
  return { run, file, output };
}

describe("train --template refuses bad input before writing anything", () => {
  it.each([
    ["{soft:4}{input{answer}", "1: column 15: a '{' inside braces"],
    ["{soft:4}\n{input}}{answer}", "2: column 8: a '}' closes nothing"],
    ["{soft:0}{input}{answer}", "1: column 1: a soft span of length 0 holds nothing"],
    ["{soft:a:4}{input}{soft:a:6}{answer}", '1: column 18: soft span "a" was declared at line 1, column 1 as 4 vectors; here it is 6 vectors'],
  ])("%j: the template's file, line and column", async (template, where) => {
    const { run, file, output } = await trainWith(template);
    await expect(run).rejects.toThrow(`${file}:${where}`);
    expect(existsSync(output)).toBe(false);
  });

  it("a slot no row fills: the data file, line and field, and where the slot is", async () => {
    const { run, file, output } = await trainWith("{soft:4}{question} = {answer}");
    await expect(run).rejects.toThrow(`${DATA}:1, field "question": the template's slot {question} (${file}:1, column 9) has no value: the row has no field "question"`);
    expect(existsSync(output)).toBe(false);
  });

  it("a row without a learned code's field: its file, line and field", async () => {
    const data = join(dir, "coded.jsonl");
    writeFileSync(data, '{"prompt":"1 2 = ","completion":"2 1","TASK":"reverse"}\n{"prompt":"3 1 = ","completion":"1 3"}\n'.repeat(3));
    const { run, output } = await trainWith("{code:TASK}{input}{answer}", data);
    await expect(run).rejects.toThrow(/coded\.jsonl:\d+, field "TASK": the learned code \{code:TASK\} needs a value/);
    expect(existsSync(output)).toBe(false);
  });

  it("a resume after the template was edited is refused (the template is fingerprinted like the data)", async () => {
    const file = join(dir, "resume.tmpl");
    const output = join(dir, "resumed");
    writeFileSync(file, "{soft:2}{input}{answer}");
    await train({ model: MODEL, data: DATA, valid: DATA, output, template: file, steps: 1 });
    writeFileSync(file, "{soft:3}{input}{answer}");
    await expect(train({ model: MODEL, data: DATA, valid: DATA, output, template: file, steps: 2, resume: true })).rejects.toThrow(/--template/);
  });
});
