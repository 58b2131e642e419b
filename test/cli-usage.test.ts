// The command line's contract (README, "The command line"): with --json every error is one JSON object on
// stdout, parse errors from commander too; exit 2 for usage, 1 otherwise; messages name the flag the user
// typed; --version; every default in --help comes from the settings' schemas; --init-text implies --init text;
// unknown words are a warning; --choice must cover the data's answers.
import { describe, expect, it } from "vitest";
import { runCli } from "./helpers/cli.js";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { trainerSettingsSchema, DEFAULT_METHOD } from "../src/train/config.js";
import { methodByName } from "../src/peft/index.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MODEL = join(ROOT, "examples/models/tiny-tasks");
const TRAIN = join(ROOT, "examples/data/reverse.train.jsonl");

const cli = runCli;

/** stdout must be exactly one JSON object. */
const one = (stdout: string) => {
  const lines = stdout.trim().split("\n");
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]);
};

describe("softprompt CLI: errors and usage", () => {
  const work = mkdtempSync(join(tmpdir(), "softprompt-usage-"));

  it.each([
    [["train", "--model", MODEL, "--data", TRAIN, "--output", join(work, "a"), "--lr", "abc"], "--lr", /^--lr must be a number, got "abc"$/],
    [["train", "--model", MODEL, "--data", TRAIN, "--output", join(work, "a"), "--batch-size", "0"], "--batch-size", /^--batch-size must be ≥ 1, got 0$/],
    [["train", "--model", MODEL, "--data", TRAIN, "--output", join(work, "a"), "--valid-fraction", "0.95"], "--valid-fraction", /^--valid-fraction must be ≤ 0\.9, got 0\.95$/],
    [["train", "--model", MODEL, "--data", TRAIN, "--output", join(work, "a"), "--init", "wild"], "--init", /--init: Allowed choices are/],
    [["train", "--data", TRAIN, "--output", join(work, "a")], "--model", /required option '--model <model>' not specified/],
    [["generate", "--model", MODEL, "--input", "3 =", "--bogus"], "--bogus", /unknown option '--bogus'/],
  ])("a bad or missing flag with --json: one usage error naming the flag, exit 2 (%j)", async (args, flag, message) => {
    const r = await cli([...args, "--json"]);
    expect(r.code).toBe(2);
    const { error } = one(r.stdout);
    expect(error).toMatchObject({ code: "usage", field: flag });
    expect(error.message).toMatch(message);
    expect(r.stderr).toBe("");
    expect(existsSync(join(work, "a"))).toBe(false);
  });

  it("a library error about an option is restated with the flag, never the field name", async () => {
    const init = await cli(["train", "--model", MODEL, "--data", TRAIN, "--output", join(work, "b"), "--init", "text", "--json"]);
    expect(init.code).toBe(2);
    expect(one(init.stdout).error).toEqual({ code: "usage", message: 'init "text" needs --init-text', field: "--init-text" });

    const topP = await cli(["generate", "--model", MODEL, "--input", "3 =", "--top-p", "2", "--json"]);
    expect(topP.code).toBe(2);
    expect(one(topP.stdout).error).toEqual({ code: "usage", message: "--top-p must be in (0, 1], got 2", field: "--top-p" });

    const text = await cli(["generate", "--model", MODEL, "--input", "3 =", "--top-p", "2"]);
    expect(text.stderr).toBe("error: --top-p must be in (0, 1], got 2\n");
    expect(text.stdout).toBe("");
  });

  it("other failures exit 1 with file and line in the JSON error", async () => {
    const bad = join(work, "bad.jsonl");
    writeFileSync(bad, '{"prompt": "1 =", "completion": "1"}\n{"prompt": 3}\n');
    const r = await cli(["train", "--model", MODEL, "--data", bad, "--output", join(work, "c"), "--json"]);
    expect(r.code).toBe(1);
    const { error } = one(r.stdout);
    expect(error).toMatchObject({ code: "data", file: bad, line: 2 });
  });

  it("--version prints package.json's version", async () => {
    const r = await cli(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version);
  });

  it("train --help shows each setting's default, as the schemas define it", async () => {
    const r = await cli(["train", "--help"]);
    expect(r.code).toBe(0);
    // One entry per option (commander wraps long descriptions onto indented lines).
    const entries = r.stdout.split(/\n {2}(?=-)/).map((e) => e.replace(/\s+/g, " "));
    const defaults = { ...methodByName(DEFAULT_METHOD).options.parse({}), ...trainerSettingsSchema.parse({}) } as Record<string, unknown>;
    const flags: Record<string, string> = { numVirtualTokens: "--num-virtual-tokens", batchSize: "--batch-size", evalEvery: "--eval-every", maxLength: "--max-length", validFraction: "--valid-fraction", init: "--init", optimizer: "--optimizer", decay: "--decay" };
    for (const [field, flag] of Object.entries(flags)) {
      const shown = JSON.stringify(defaults[field]);
      const entry = entries.find((e) => e.startsWith(`${flag} <`));
      expect(entry, flag).toContain(`default: ${shown})`);
    }
    // The learning rate is each method's own: prompt tuning's is the trainer's default.
    expect(entries.find((e) => e.startsWith("--lr <"))).toContain(`prompt ${JSON.stringify(defaults.lr)}`);
  });

  it("--init-text alone starts from the text (implies --init text) and names words the tokenizer does not know", async () => {
    const out = join(work, "init-text");
    const r = await cli(["train", "--model", MODEL, "--data", TRAIN, "--output", out, "--num-virtual-tokens", "4", "--steps", "2", "--init-text", "reverse: abc", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"))).toMatchObject({ prompt_tuning_init: "TEXT", prompt_tuning_init_text: "reverse: abc" });
    expect(r.stderr).toContain('warning: --init-text "reverse: abc": "abc" is not in the model\'s vocabulary; the model sees <unk> instead');
    one(r.stdout);
  });

  it("generate warns about unknown words in --input, and not about known ones", async () => {
    const r = await cli(["generate", "--model", MODEL, "--input", "3 x 1 y =", "--input", "3 1 =", "--max-new-tokens", "2", "--json"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('warning: --input "3 x 1 y =": "x", "y" are not in the model\'s vocabulary');
    expect(r.stderr).not.toContain('--input "3 1 ="');
  });

  it("eval --choice on data whose answer is not a choice fails naming the first such line", async () => {
    const data = join(work, "choices.jsonl");
    writeFileSync(data, ['{"prompt":"1 =","completion":"yes"}', '{"prompt":"2 =","completion":" no"}', '{"prompt":"3 =","completion":"maybe"}', '{"prompt":"4 =","completion":"perhaps"}'].join("\n") + "\n");
    const r = await cli(["eval", "--model", MODEL, "--data", data, "--choice", "yes", "--choice", "no", "--json"]);
    expect(r.code).toBe(1);
    const { error } = one(r.stdout);
    expect(error).toMatchObject({ code: "data", file: data, line: 3 });
    expect(error.message).toContain('"maybe" is not among the choices ("yes", "no")');
    rmSync(work, { recursive: true, force: true });
  });
});
