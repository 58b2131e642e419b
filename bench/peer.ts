// The peer baseline: real PEFT prompt tuning (shared/reference/bench_peft.py), run beside ours when the
// reference stack is installed, so the ratio comes from one run on one machine.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface PeerResult {
  model: string;
  train_tokens_per_s: number;
  forward_tokens_per_s: number;
  train_step_s_median: number;
}

const REFERENCE = fileURLToPath(new URL("../../shared/reference/", import.meta.url));
const PYTHON = join(process.env.REFERENCE_VENV ?? join(homedir(), ".cache/softprompt-reference/venv"), "bin/python");

/** The reference venv's python, bench_peft.py and the environment to run it in, or why they are absent. */
export function peftPeer(): { python: string; script: string; env: NodeJS.ProcessEnv } | { skipped: string } {
  const script = join(REFERENCE, "bench_peft.py");
  if (!existsSync(script)) return { skipped: `no ${script}` };
  if (!existsSync(PYTHON)) return { skipped: `no reference venv at ${PYTHON} (build it with shared/reference/setup.sh)` };
  const env = { ...process.env };
  // bench_peft.py's README: run with these unset, or numpy/torch take a slow path.
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return { python: PYTHON, script, env };
}

/** PEFT's numbers for these shapes, or null (with the reason) when the reference stack is absent. */
export function runPeft(models: string[], steps = 3): { results: PeerResult[] } | { skipped: string } {
  const peer = peftPeer();
  if ("skipped" in peer) return peer;
  const { python, script, env } = peer;
  const out = join(mkdtempSync(join(tmpdir(), "peft-bench-")), "peft.json");
  const results: PeerResult[] = [];
  for (const model of models) {
    execFileSync(python, [script, "--model", model, "--steps", String(steps), "--json", out], { env, stdio: ["ignore", "ignore", "inherit"] });
    results.push(...(JSON.parse(readFileSync(out, "utf8")) as { results: PeerResult[] }).results);
  }
  return { results };
}
