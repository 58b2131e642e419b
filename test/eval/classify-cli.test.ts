// `softprompt classify` on the command line: one JSON object with accuracy per label and confusion counts,
// calibrated beside uncalibrated; a verbalizer label with no words is one error naming file and field.
import { describe, expect, it } from "vitest";
import { runCliJson } from "../helpers/cli.js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { classifyView } from "../../src/report/classify.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MODEL = join(ROOT, "examples/models/tiny-tasks");

const cli = runCliJson;

describe("softprompt classify", () => {
  it("prints accuracy per label and confusion counts, with and without calibration; a label without words is refused", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-classify-cli-"));
    try {
      const data = join(dir, "rows.jsonl");
      writeFileSync(data, ["reverse: 5 2 1 = ", "reverse: 4 2 = ", "reverse: 8 1 = ", "reverse: 7 2 = "].map((prompt, i) => JSON.stringify({ prompt, label: i % 2 === 0 ? "one" : "two" })).join("\n"));
      const verbalizer = join(dir, "v.json");
      writeFileSync(verbalizer, JSON.stringify({ one: ["1"], two: "2" }));
      const run = await cli(["classify", "--model", MODEL, "--data", data, "--verbalizer", verbalizer, "--calibrate"]);
      expect(run.code, run.stdout).toBe(0);
      const report = JSON.parse(run.stdout);
      expect(report).toMatchObject({ examples: 4, labels: ["one", "two"], prompting: "none", uncalibrated: { accuracy: 1, perLabel: { one: { examples: 2, correct: 2 } }, confusion: { one: { one: 2, two: 0 } } } });
      expect(report.calibrated.accuracy).toBe(1);
      expect(classifyView(report)).toContain("accuracy on 4 examples: uncalibrated 100%, calibrated 100%");

      writeFileSync(verbalizer, JSON.stringify({ one: ["1"], two: [] }));
      const bad = await cli(["classify", "--model", MODEL, "--data", data, "--verbalizer", verbalizer]);
      expect(bad.code).not.toBe(0);
      expect(JSON.parse(bad.stdout).error).toMatchObject({ code: "data", message: `${verbalizer}, field "two": the label has no verbalizer words; expected a word or a non-empty list of words` });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
