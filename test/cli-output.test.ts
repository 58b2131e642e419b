// Readable output without --json (tables with a headline, explanations), the training curve, and `show`,
// on the example model (a short run) — plus the table, tick and SVG helpers on their own.
import { describe, expect, it } from "vitest";
import { runCli } from "./helpers/cli.js";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { formatTable } from "../src/report/table.js";
import { lossCurveSvg, readLossLog } from "../src/report/loss-curve.js";
import { niceTicks } from "../src/report/plot.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MODEL = join(ROOT, "examples/models/tiny-tasks");
const TRAIN = join(ROOT, "examples/data/reverse.train.jsonl");
const VALID = join(ROOT, "examples/data/reverse.valid.jsonl");

const cli = runCli;

describe("report helpers", () => {
  it("formatTable aligns columns: numbers right, text left, under a rule", () => {
    expect(formatTable(["", "loss", "n"], [["soft prompt", 0.5, 100], ["none", 12.25, 7]])).toBe(
      ["              loss    n", "───────────  ─────  ───", "soft prompt    0.5  100", "none         12.25    7", ""].join("\n"),
    );
  });

  it("niceTicks covers the range in steps of 1, 2 or 5 × 10^k", () => {
    expect(niceTicks(0, 60)).toEqual([0, 20, 40, 60]);
    expect(niceTicks(0, 1.63)).toEqual([0, 0.5, 1, 1.5, 2]);
    expect(niceTicks(0.02, 0.07)).toEqual([0.02, 0.03, 0.04, 0.05, 0.06, 0.07]);
  });

  it("the curve has both series, axes with labelled ticks and a legend; a step logged twice keeps its last line", async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-curve-"));
    const log = join(dir, "train_log.jsonl");
    writeFileSync(log, [{ step: 1, loss: 2 }, { step: 2, loss: 9 }, { step: 2, loss: 1.5, validLoss: 1.7 }, { step: 3, loss: 1, validLoss: 1.2 }].map((e) => JSON.stringify(e)).join("\n") + "\n");
    const points = await readLossLog(log);
    expect(points).toEqual([{ step: 1, loss: 2 }, { step: 2, loss: 1.5, validLoss: 1.7 }, { step: 3, loss: 1, validLoss: 1.2 }]);
    const svg = lossCurveSvg(points);
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg.match(/<path d="M/g)).toHaveLength(3); // axes, train line, validation line
    expect(svg.match(/<circle /g)).toHaveLength(3); // two validation points and the legend's marker
    for (const label of [">step<", ">loss (nats per token)<", ">train loss<", ">validation loss<", ">0<", ">2<"]) expect(svg).toContain(label);
    writeFileSync(log, '{"step": 1, "loss": 2}\nnot json\n');
    await expect(readLossLog(log)).rejects.toThrow(`${log}:2: expected one JSON object per line`);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe("softprompt CLI: readable output", () => {
  const work = mkdtempSync(join(tmpdir(), "softprompt-output-"));
  const run = join(work, "reverse");

  it("train ends with a summary table and writes curve.svg beside the adapter", async () => {
    const r = await cli(["train", "--model", MODEL, "--data", TRAIN, "--valid", VALID, "--output", run, "--num-virtual-tokens", "8", "--steps", "20", "--lr", "0.1", "--eval-every", "10"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^steps +20\n/);
    expect(r.stdout).toMatch(/^final train loss +\d/m);
    expect(r.stdout).toMatch(/^best validation +step (10|20), loss \d/m);
    expect(r.stdout).toMatch(/^examples +400 train, 100 validation$/m);
    expect(r.stdout).toContain(`loss curve        ${join(run, "curve.svg")}`);
    const svg = readFileSync(join(run, "curve.svg"), "utf8");
    expect(svg.match(/<circle /g)).toHaveLength(3); // validation at steps 10 and 20, and the legend
  });

  it("eval prints soft / hard / none as one table under a headline", async () => {
    const r = await cli(["eval", "--model", MODEL, "--adapter", run, "--data", VALID, "--compare-text", "reverse: "]);
    expect(r.code).toBe(0);
    const [headline, blank, header, rule, ...rows] = r.stdout.trimEnd().split("\n");
    expect(headline).toMatch(/^soft prompt: \d+% exact match, hard prompt \d+%, no prompt \d+%$/);
    expect(blank).toBe("");
    expect(header.split(/ {2,}/).filter(Boolean)).toEqual(["loss", "perplexity", "exact match", "examples"]);
    expect(rule).toMatch(/^[─ ]+$/);
    expect(rows.map((row) => row.slice(0, 11))).toEqual(["soft prompt", "hard prompt", "no prompt  "]);
    expect(new Set(rows.map((row) => row.length)).size).toBe(1); // aligned
  });

  it("eval without an adapter or --compare-text has no baselines section, in JSON or text", async () => {
    const json = await cli(["eval", "--model", MODEL, "--data", VALID, "--json"]);
    expect(JSON.parse(json.stdout)).not.toHaveProperty("baselines");
    const text = await cli(["eval", "--model", MODEL, "--data", VALID]);
    expect(text.stdout).toMatch(/^no prompt: \d+% exact match\n/);
    expect(text.stdout).not.toMatch(/soft prompt|hard prompt|baselines/);
  });

  it("inspect prints one row per vector and says what its scores mean", async () => {
    const r = await cli(["inspect", "--model", MODEL, "--adapter", run, "--compare", run, "--top", "2"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^vector +norm ratio +nearest tokens \(cosine\)$/);
    expect(lines.slice(2, 10).every((l) => /^ +\d +\d+\.\d+ +"[^"]+" -?\d\.\d\d +"[^"]+" -?\d\.\d\d$/.test(l))).toBe(true);
    for (const term of ["norm ratio:", "cosine:", "flat:", "mean best match:"]) expect(lines.filter((l) => l.startsWith(term))).toHaveLength(1);
  });

  it("show tells what the adapter is and how it was trained", async () => {
    const json = await cli(["show", run, "--json"]);
    expect(json.code).toBe(0);
    const s = JSON.parse(json.stdout);
    expect(s).toMatchObject({ method: "PROMPT_TUNING", baseModel: MODEL, virtualTokens: 8, tokenDim: 64, steps: 20, run });
    expect([10, 20]).toContain(s.bestStep);
    expect(s.bestValidLoss).toBeGreaterThan(0);
    expect(s.baseFingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(Number.isNaN(Date.parse(s.created))).toBe(false);
    const text = await cli(["show", run]);
    expect(text.stdout).toMatch(/^method +PROMPT_TUNING, init SAMPLE_VOCAB$/m);
    expect(text.stdout).toMatch(new RegExp(`^best step +${s.bestStep} \\(validation loss \\d`, "m"));
    expect(text.stdout).toMatch(/^steps trained +20$/m);
    expect(text.stdout).toMatch(/^created +\d{4}-/m);
  });

  it("show on a folder that is not an adapter is an error naming the file", async () => {
    const r = await cli(["show", work, "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error).toMatchObject({ code: "adapter", file: join(work, "adapter_config.json") });
    rmSync(work, { recursive: true, force: true });
  });
});
