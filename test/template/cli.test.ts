// The command line with templates: train --template alone trains the template method, generate and
// eval take --code; a bad template exits 2 with its file, line and column, nothing written.
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MODEL = join(ROOT, "examples/models/tiny-tasks");
const work = mkdtempSync(join(tmpdir(), "softprompt-template-cli-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const cli = runCli;

describe("softprompt with --template and --code", () => {
  it("train --template (no --method) trains a template adapter; generate --code uses it", async () => {
    const data = join(work, "coded.jsonl");
    writeFileSync(data, ['{"prompt":"1 2 3 = ","completion":"3 2 1","TASK":"reverse"}', '{"prompt":"3 1 2 = ","completion":"1 2 3","TASK":"sort"}'].join("\n") + "\n");
    writeFileSync(join(work, "t.tmpl"), "{code:TASK:2}{input}{answer}\n");
    const output = join(work, "run");
    const trained = await cli(["train", "--model", MODEL, "--data", data, "--valid", data, "--template", join(work, "t.tmpl"), "--output", output, "--steps", "2", "--json"]);
    expect(trained.code, trained.stderr).toBe(0);
    const config = JSON.parse(readFileSync(join(output, "adapter_config.json"), "utf8"));
    expect([config.peft_type, config.code_values]).toEqual(["SOFTPROMPT_TEMPLATE", { TASK: ["reverse", "sort"] }]);
    const generated = await cli(["generate", "--model", MODEL, "--adapter", output, "--input", "3 1 2 = ", "--code", "TASK=sort", "--max-new-tokens", "3", "--json"]);
    expect(generated.code, generated.stderr).toBe(0);
    expect(typeof JSON.parse(generated.stdout).text).toBe("string");
    const wrong = await cli(["eval", "--model", MODEL, "--adapter", output, "--data", data, "--code", "TASK=copy", "--json"]);
    expect(wrong.code).toBe(2);
    expect(JSON.parse(wrong.stdout).error.message).toMatch(/code TASK has no learned value "copy"; learned: "reverse", "sort"/);
  });

  it("a bad template exits 2 naming its file, line and column; nothing is written", async () => {
    writeFileSync(join(work, "bad.tmpl"), "{input}\n{soft:0}{answer}");
    const output = join(work, "bad");
    const r = await cli(["train", "--model", MODEL, "--data", join(ROOT, "examples/data/reverse.valid.jsonl"), "--template", join(work, "bad.tmpl"), "--output", output, "--json"]);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).error.message).toBe(`${join(work, "bad.tmpl")}:2: column 1: a soft span of length 0 holds nothing; give at least 1 vector`);
    expect(existsSync(output)).toBe(false);
  });
});
