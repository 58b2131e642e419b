// Classification by verbalizer words on the tiny example model: a reverse row's label is its answer's first
// digit (the input's last), so with the task's tag the model's next word names it; without the tag it guesses.
import { describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/models/index.js";
import { parseJsonl } from "../../src/data/index.js";
import { calibrate, classify, parseVerbalizer, verbalizerTokens } from "../../src/eval/classify.js";
import { SoftpromptError } from "../../src/util/errors.js";
import { errorOf } from "../helpers/errors.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const NAMES = ["one", "two", "three"];
const VERBALIZER = parseVerbalizer({ one: ["1"], two: "2", three: ["3", "3 3"] }, "v.json");
/** 30 rows, 10 per label: "reverse: d d … k = " labelled by k. */
function rows(tag: string) {
  const lines = Array.from({ length: 30 }, (_, i) => {
    const last = (i % 3) + 1;
    const digits = [(i * 7) % 10, (i * 3 + 1) % 10, last];
    return JSON.stringify({ prompt: `${tag}${digits.join(" ")} = `, label: NAMES[last - 1] });
  });
  return parseJsonl(lines.join("\n"), "rows.jsonl");
}

describe("classify by verbalizer words", () => {
  it("with the task's tag: ≥ 95% accuracy, per-label counts and a confusion table, calibrated beside uncalibrated", async () => {
    const model = await loadModel(MODEL);
    const report = await classify(model.lm, model.tokenizer, rows("reverse: "), VERBALIZER, { verbalizerFile: "v.json", calibrate: true });
    expect(report.labels).toEqual(NAMES);
    expect(report.uncalibrated.accuracy).toBeGreaterThanOrEqual(0.95);
    expect(report.uncalibrated.perLabel.one.examples).toBe(10);
    const total = Object.values(report.uncalibrated.confusion).flatMap((row) => Object.values(row)).reduce((a, b) => a + b, 0);
    expect(total).toBe(30);
    expect(report.calibrated!.accuracy).toBeGreaterThanOrEqual(0.95);
    const p = Object.values(report.calibrated!.contentFree);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    console.log(JSON.stringify({ tagged: { uncalibrated: report.uncalibrated.accuracy, calibrated: report.calibrated!.accuracy, contentFree: report.calibrated!.contentFree } }));
  });

  it("without the tag the model only guesses; calibration is reported beside", async () => {
    const model = await loadModel(MODEL);
    const report = await classify(model.lm, model.tokenizer, rows(""), VERBALIZER, { verbalizerFile: "v.json", calibrate: true });
    console.log(JSON.stringify({ untagged: { uncalibrated: report.uncalibrated.accuracy, calibrated: report.calibrated!.accuracy } }));
    expect(report.uncalibrated.accuracy).toBeLessThan(0.95);
    expect(report.uncalibrated.predictions).toHaveLength(30);
  });

  it("calibration divides by the content-free probabilities: a label the model favours anyway loses its head start", () => {
    const [row] = calibrate([[-1, -2]], [0.9, 0.1]);
    expect(row[0]).toBeCloseTo(-1 - Math.log(0.9), 9);
    expect(row[1]).toBeCloseTo(-2 - Math.log(0.1), 9);
    expect(row[1]).toBeGreaterThan(row[0]);
  });

  it("refuses a label with no words, a word that tokenizes to nothing, and a row whose label is not in the verbalizer", async () => {
    const model = await loadModel(MODEL);
    expect(errorOf(() => parseVerbalizer({ yes: [], no: ["0"] }, "v.json")).message).toBe('v.json, field "yes": the label has no verbalizer words; expected a word or a non-empty list of words');
    expect(errorOf(() => parseVerbalizer({ yes: ["1", 2], no: ["0"] }, "v.json")).place).toEqual({ file: "v.json", field: "yes[1]" });
    expect(errorOf(() => verbalizerTokens(parseVerbalizer({ yes: ["1", "\t"], no: ["0"] }, "v.json"), model.tokenizer, "v.json")).message).toBe('v.json, field "yes[1]": the word "\\t" tokenizes to nothing; give a word the tokenizer can encode');
    const bad = parseJsonl('{"prompt":"1 = ","label":"one"}\n{"prompt":"2 = ","label":"four"}', "rows.jsonl");
    const err = await classify(model.lm, model.tokenizer, bad, VERBALIZER, { verbalizerFile: "v.json" }).catch((e: unknown) => e);
    expect((err as SoftpromptError).message).toBe('rows.jsonl:2, field "label": the label "four" is not in the verbalizer ("one", "two", "three")');
  });
});
