// The train command as a run a user can trust: Ctrl-C writes a checkpoint, shows the cursor again,
// prints the command that resumes and exits 130; that command finishes the run with no step logged
// twice; a second train into the same folder is refused unless --overwrite; --method picks the method.
import { describe, expect, it } from "vitest";
import { runCli } from "./helpers/cli.js";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { modelDir } from "./helpers/golden.js";

const BIN = fileURLToPath(new URL("../bin/softprompt.js", import.meta.url));
const MODEL = modelDir("gpt2");

const cli = runCli;

const logSteps = (dir: string) => readFileSync(join(dir, "train_log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).step as number);

describe("softprompt train as a run", () => {
  const work = mkdtempSync(join(tmpdir(), "softprompt-cli-run-"));
  const data = join(work, "data.jsonl");
  writeFileSync(data, Array.from({ length: 12 }, (_, i) => JSON.stringify({ prompt: `item ${i} is`, completion: " blue" })).join("\n") + "\n");

  it("Ctrl-C: checkpoint, cursor back, the resume command, exit 130; resuming finishes with no step twice", async () => {
    const out = join(work, "interrupted");
    const args = ["train", "--model", MODEL, "--data", data, "--output", out, "--num-virtual-tokens", "4", "--steps", "400", "--batch-size", "4", "--save-every", "1000"];
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b) => (stdout += b));
    child.stderr.on("data", (b) => (stderr += b));
    // Interrupt once a few steps are logged.
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (existsSync(join(out, "train_log.jsonl")) && readFileSync(join(out, "train_log.jsonl"), "utf8").split("\n").length > 3) {
          clearInterval(poll);
          child.kill("SIGINT");
          resolve();
        }
      }, 50);
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(130);
    const state = JSON.parse(readFileSync(join(out, "checkpoint", "state.json"), "utf8"));
    expect(state.step).toBe(logSteps(out).length);
    expect(stderr).toMatch(/stopping after this step and writing a checkpoint/);
    const resume = /resume with: (.*)/.exec(stdout)?.[1];
    expect(resume).toBe(`softprompt ${args.map((a) => (a.includes(" ") ? `'${a}'` : a)).join(" ")} --resume`);

    const shortened = [...args.slice(0, args.indexOf("--steps")), "--steps", String(state.step + 3), ...args.slice(args.indexOf("--steps") + 2), "--resume"];
    const r = await cli(shortened);
    expect(r.code).toBe(0);
    expect(logSteps(out)).toEqual(Array.from({ length: state.step + 3 }, (_, i) => i + 1));
  }, 60_000);

  // In a terminal (util-linux `script` gives one), Ctrl-C is the terminal's: the bar hid the cursor and must show it again.
  it.skipIf(!existsSync("/usr/bin/script"))("in a terminal, Ctrl-C leaves the cursor visible", async () => {
    const out = join(work, "tty");
    const command = [process.execPath, BIN, "train", "--model", MODEL, "--data", data, "--output", out, "--num-virtual-tokens", "4", "--steps", "100000", "--batch-size", "4"].join(" ");
    const child = spawn("/usr/bin/script", ["-qfec", command, "/dev/null"], { stdio: ["pipe", "pipe", "inherit"] });
    let screen = "";
    child.stdout.on("data", (b) => (screen += b));
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (screen.includes("step ") && existsSync(join(out, "train_log.jsonl"))) {
          clearInterval(poll);
          child.stdin.write("\u0003"); // Ctrl-C, as the terminal sends it
          resolve();
        }
      }, 50);
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(130);
    expect(screen.lastIndexOf("\u001b[?25h")).toBeGreaterThan(screen.lastIndexOf("\u001b[?25l"));
    expect(screen).toMatch(/resume with: softprompt train .* --resume/);
  }, 60_000);

  it("refuses to train over a run without --overwrite, names --resume with no checkpoint, and takes --method", async () => {
    const out = join(work, "twice");
    const base = ["train", "--model", MODEL, "--data", data, "--output", out, "--num-virtual-tokens", "4", "--steps", "2", "--json"];
    expect((await cli(base)).code).toBe(0);
    const again = await cli(base);
    expect(again.code).toBe(2);
    expect(JSON.parse(again.stdout).error.message).toMatch(/already holds a training run .*pass --resume to continue it or --overwrite to start over/);
    expect((await cli([...base, "--overwrite"])).code).toBe(0);
    const noCheckpoint = await cli(["train", "--model", MODEL, "--data", data, "--output", join(work, "none"), "--resume", "--json"]);
    expect(noCheckpoint.code).toBe(2);
    expect(JSON.parse(noCheckpoint.stdout).error.message).toMatch(/nothing to resume/);
    const unknown = await cli([...base, "--method", "nope"]);
    expect(unknown.code).toBe(2);
    expect(JSON.parse(unknown.stdout).error.message).toMatch(/--method.*Allowed choices are prompt/);
    rmSync(work, { recursive: true, force: true });
  }, 60_000);
});
