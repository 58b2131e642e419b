// `softprompt distill` on the command line: a sweep writes one ordinary adapter per size that `generate`
// reads and `show` calls distilled; bad flags are one JSON error naming the flag, with nothing written.
import { describe, expect, it } from "vitest";
import { runCliJson } from "../helpers/cli.js";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MODEL = join(ROOT, "examples/models/tiny-tasks");
const TEACHER = "reverse: 5 2 8 = 8 2 5 <|endoftext|> reverse: ";

const cli = runCliJson;

describe("softprompt distill", () => {
  it("sweeps sizes into ordinary adapters that generate reads and show calls distilled", async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-distill-cli-"));
    try {
      const data = join(dir, "inputs.jsonl");
      writeFileSync(data, readFileSync(join(ROOT, "examples/data/reverse.train.jsonl"), "utf8").split("\n").slice(0, 20).join("\n"));
      const prompt = join(dir, "teacher.txt");
      writeFileSync(prompt, TEACHER);
      const output = join(dir, "out");
      const run = await cli(["distill", "--model", MODEL, "--teacher-prompt", prompt, "--data", data, "--valid-fraction", "0.25", "--output", output, "--sweep", "1,2", "--steps", "4", "--max-new-tokens", "8"]);
      expect(run.code, run.stdout).toBe(0);
      const report = JSON.parse(run.stdout);
      expect(report.students.map((s: { numVirtualTokens: number; output: string }) => [s.numVirtualTokens, s.output])).toEqual([[1, join(output, "k1")], [2, join(output, "k2")]]);
      expect(report.heldOut).toBe(5);
      expect(report.teacher).toMatchObject({ promptTokens: 10, distributions: "full" });
      expect(existsSync(report.chart)).toBe(true);

      const generated = await cli(["generate", "--model", MODEL, "--adapter", join(output, "k2"), "--input", "3 1 4 = ", "--max-new-tokens", "4"]);
      expect(generated.code, generated.stdout).toBe(0);
      const shown = await cli(["show", join(output, "k2")]);
      expect(JSON.parse(shown.stdout).distilled).toMatchObject({ teacherPromptTokens: 10, heldOut: 5, greedy: report.students[1].greedy });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses K of 0, a sweep that is not a list of sizes, a teacher prompt past the context, a negative --lm-weight or --hidden-weight and a pooled prefix, naming the flag", async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-distill-cli-"));
    try {
      const base = ["distill", "--model", MODEL, "--data", join(ROOT, "examples/data/reverse.valid.jsonl"), "--output", join(dir, "out")];
      const cases: [string[], string][] = [
        [["--teacher-text", TEACHER, "--num-virtual-tokens", "0"], "--num-virtual-tokens"],
        [["--teacher-text", TEACHER, "--sweep", "1,x"], "--sweep"],
        [["--teacher-text", Array(60).fill("3").join(" ")], "--teacher-text"],
        [["--teacher-text", TEACHER, "--lm-weight", "-1"], "--lm-weight"],
        [["--teacher-text", TEACHER, "--hidden-weight", "-1"], "--hidden-weight"],
        [["--teacher-text", TEACHER, "--into", "prefix", "--init", "pooled"], "--init"],
      ];
      for (const [flags, field] of cases) {
        const { code, stdout } = await cli([...base, ...flags]);
        expect(code, stdout).toBe(2);
        expect(JSON.parse(stdout).error.field).toBe(field);
      }
      expect(existsSync(join(dir, "out"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
