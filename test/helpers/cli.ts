// The command line as a user runs it: `bin/softprompt.js` in a process of its own, its exit code and output.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BIN = join(ROOT, "bin/softprompt.js");

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `softprompt ...args`; never rejects (a failing command is its exit code). */
export function runCli(args: readonly string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { encoding: "utf8" }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Run `softprompt ...args --json` (one JSON object on stdout, errors included). */
export const runCliJson = (args: readonly string[]): Promise<CliRun> => runCli([...args, "--json"]);
