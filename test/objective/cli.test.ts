// The objective's flags on `softprompt train`: a run with negatives and --unlikelihood-weight records its
// weights; a bad weight is one usage error naming the flag; a bad reward is one data error naming its line.
import { describe, expect, it } from "vitest";
import { runCliJson } from "../helpers/cli.js";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MODEL = join(ROOT, "examples/models/tiny-tasks");

const cli = runCliJson;

describe("softprompt train with objective flags", () => {
  it("trains with negatives under --unlikelihood-weight; refuses a bad --dpo-beta and a bad reward", { timeout: 90_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-objective-cli-"));
    try {
      const data = join(dir, "d.jsonl");
      const rows = [{ prompt: "1 2 = ", completion: "2 1" }, { prompt: "1 2 = ", completion: "1 2", negative: true }, { prompt: "3 4 5 = ", completion: "5 4 3", weight: 2 }];
      writeFileSync(data, rows.map((r) => JSON.stringify(r)).join("\n"));
      const base = ["train", "--model", MODEL, "--data", data, "--valid-fraction", "0", "--steps", "2", "--batch-size", "2", "--num-virtual-tokens", "2"];
      const run = await cli([...base, "--output", join(dir, "ok"), "--unlikelihood-weight", "0.5"]);
      expect(run.code, run.stdout).toBe(0);
      expect(JSON.parse(run.stdout).steps).toBe(2);
      const state = JSON.parse(readFileSync(join(dir, "ok/checkpoint/state.json"), "utf8")) as { settings: Record<string, unknown> };
      expect(state.settings).toMatchObject({ objective: "combined", unlikelihoodWeight: 0.5, lmWeight: 1, dpoWeight: 0 });

      const beta = await cli([...base, "--output", join(dir, "beta"), "--dpo-beta", "0"]);
      expect(beta.code).toBe(2);
      expect(JSON.parse(beta.stdout).error).toMatchObject({ code: "usage", field: "--dpo-beta" });

      writeFileSync(data, [...rows.slice(0, 1), { ...rows[2], reward: "high" }].map((r) => JSON.stringify(r)).join("\n"));
      const reward = await cli([...base, "--output", join(dir, "reward")]);
      expect(reward.code).toBe(1);
      expect(JSON.parse(reward.stdout).error).toMatchObject({ code: "data", message: `${data}:2, field "reward": expected a reward (a finite number), got string "high"` });
      expect(existsSync(join(dir, "reward"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
