// The command line with Cartridges and prefixes: `--method cartridge --init-text` trains a CARTRIDGE
// adapter (the flag's implication for prompt tuning does not leak into it); `generate` and `eval` find the
// method in adapter_config.json; bad values name the flag and what is accepted, as one JSON error.
import { describe, expect, it } from "vitest";
import { runCliJson } from "../helpers/cli.js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MODEL = join(ROOT, "examples/models/tiny-tasks");
const TRAIN = join(ROOT, "examples/data/reverse.train.jsonl");
const VALID = join(ROOT, "examples/data/reverse.valid.jsonl");

const cli = runCliJson;

describe("softprompt train --method cartridge", () => {
  it("trains from --init-text, then generate and eval read the CARTRIDGE adapter", async () => {
    const output = mkdtempSync(join(tmpdir(), "softprompt-cartridge-cli-"));
    try {
      const train = await cli(["train", "--method", "cartridge", "--model", MODEL, "--data", TRAIN, "--valid", VALID, "--output", output, "--overwrite",
        "--num-virtual-tokens", "10", "--num-frozen-tokens", "2", "--init-text", "reverse: 1 2 3 4 5 6 7 8 9 = 9 8", "--lr", "0.1", "--steps", "200"]);
      expect(train.code, train.stdout).toBe(0);
      const config = JSON.parse(readFileSync(join(output, "adapter_config.json"), "utf8"));
      expect(config).toMatchObject({ peft_type: "CARTRIDGE", num_virtual_tokens: 10, num_frozen_tokens: 2, token_dim: 32, num_attention_heads: 2 });
      const generated = await cli(["generate", "--model", MODEL, "--adapter", output, "--input", "3 1 4 1 5 = "]);
      expect(generated.code, generated.stdout).toBe(0);
      expect(generated.stdout).toContain("5 1 4 1 3");
      const evaluated = await cli(["eval", "--model", MODEL, "--adapter", output, "--data", VALID]);
      expect(evaluated.code, evaluated.stdout).toBe(0);
      expect(JSON.parse(evaluated.stdout).accuracy).toBeGreaterThanOrEqual(0.95);
    } finally {
      rmSync(output, { recursive: true, force: true });
    }
  });

  it("--num-frozen-tokens above --num-virtual-tokens: one JSON error naming the flag, exit 2", async () => {
    const { code, stdout } = await cli(["train", "--method", "cartridge", "--model", MODEL, "--data", TRAIN, "--output", join(tmpdir(), "never-written"), "--num-virtual-tokens", "4", "--num-frozen-tokens", "5"]);
    expect(code).toBe(2);
    expect(JSON.parse(stdout).error).toMatchObject({ code: "usage", field: "--num-frozen-tokens" });
    expect(JSON.parse(stdout).error.message).toMatch(/< --num-virtual-tokens \(4\): 5 is more than the cartridge has/);
  });
});
