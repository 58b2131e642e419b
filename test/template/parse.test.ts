// The template parser: what each construct parses to, each bad input's error and place, and a fuzz
// check that any text either parses or gives the parser's own error with a position.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parseTemplate, TemplateError } from "../../src/template/parse.js";

function errorOf(source: string): TemplateError {
  try {
    parseTemplate(source, "t.tmpl");
  } catch (err) {
    if (err instanceof TemplateError) return err;
    throw err;
  }
  throw new Error(`parsed: ${source}`);
}

describe("parseTemplate", () => {
  it("reads slots, soft spans (sized, from words, named), codes, the answer and literal braces", () => {
    const t = parseTemplate('{soft:intro:8}[TONE: formal] {{x}} {input}{soft:"Classify it"}{code:TASK}{soft:4}{soft:intro:8} = {answer} done', "t.tmpl");
    expect(t.segments.map((s) => s.kind)).toEqual(["soft", "text", "slot", "soft", "code", "soft", "soft", "text", "answer", "text"]);
    expect(t.segments[1]).toEqual({ kind: "text", text: "[TONE: formal] {x} " });
    expect([...t.spans.values()].map(({ name, length, initText }) => ({ name, length, initText }))).toEqual([
      { name: "intro", length: 8, initText: undefined },
      { name: "#1", length: undefined, initText: "Classify it" },
      { name: "#2", length: 4, initText: undefined },
    ]);
    expect(t.codes.get("TASK")?.length).toBe(8);
    expect(parseTemplate("{code:TASK:3}{input}{answer}").codes.get("TASK")?.length).toBe(3);
  });

  it.each([
    ["{input", 1, 1, "not closed"],
    ["ab\n{input} }{answer}", 2, 9, "closes nothing"],
    ["{in{put}{answer}", 1, 4, "inside braces"],
    ["{soft:0}{input}{answer}", 1, 1, "length 0"],
    ["{input}\n  {soft:a:4}{soft:a:5}{answer}", 2, 13, 'soft span "a" was declared at line 2, column 3 as 4 vectors'],
    ["{input}", 1, 8, "no {answer}"],
    ["{answer}{answer}", 1, 9, "twice"],
    ["{answer}{soft:3}", 1, 9, "after {answer}"],
    ["{soft:x}{answer}", 1, 1, "whole number"],
    ['{soft:""}{answer}', 1, 1, "must not be empty"],
    ["{1abc}{answer}", 1, 1, "slot name"],
    ["{lora:3}{answer}", 1, 1, 'unknown kind "lora"'],
    ["{code:T:2}{code:T:3}{answer}", 1, 11, 'code "T" was declared'],
  ])("%j fails at line %i, column %i: %s", (source, line, column, message) => {
    const err = errorOf(source);
    expect(err.message).toContain(message);
    expect(err.message.startsWith(`t.tmpl:${line}: column ${column}:`)).toBe(true);
    expect({ file: err.file, line: err.line, column: err.column }).toEqual({ file: "t.tmpl", line, column });
  });

  it("fuzz: any text parses or throws a TemplateError with a position inside the text", () => {
    const pieces = fc.constantFrom("{", "}", "{{", "}}", ":", '"', "\\", "\n", "soft", "code", "answer", "input", "3", "0", "x", " ", "{answer}", "{soft:2}", "{soft:a:", '"w"');
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.array(pieces, { maxLength: 24 }).map((xs) => xs.join(""))), (source) => {
        try {
          parseTemplate(source, "f");
        } catch (err) {
          if (!(err instanceof TemplateError)) throw err;
          const lines = source.split("\n");
          expect(err.line).toBeGreaterThanOrEqual(1);
          expect(err.line).toBeLessThanOrEqual(lines.length);
          expect(err.column).toBeGreaterThanOrEqual(1);
          expect(err.column).toBeLessThanOrEqual(lines[err.line - 1].length + 1);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
