/**
 * The readable (non --json) output of each command: aligned tables and one-line explanations.
 * Pure functions from a command's result to text, so tests can check them without a terminal.
 */
import type { EvalReport, InspectReport, TrainSummary } from "../workflows.js";
import type { TaskEvalResult } from "../eval/task.js";
import type { AdapterSummary } from "./adapter-summary.js";
import type { CompareReport } from "../compare.js";
import { formatDefault, formatPairs, formatTable, percent } from "./table.js";

/** Soft, hard and no prompt as rows of one table, under a headline comparing their accuracy. */
export function evalView(report: EvalReport, { choices = false }: { choices?: boolean } = {}): string {
  const rows: [string, TaskEvalResult | undefined][] = [
    ["soft prompt", report.prompting === "soft" ? report : undefined],
    ["hard prompt", report.baselines.text],
    ["no prompt", report.prompting === "none" ? report : report.baselines.none],
  ];
  const present = rows.filter((r): r is [string, TaskEvalResult] => r[1] !== undefined);
  const metric = choices ? "choice accuracy" : "exact match";
  const hasAccuracy = present.some(([, r]) => r.accuracy !== null);
  const headline = present
    .map(([name, r], i) => {
      const value = hasAccuracy ? percent(r.accuracy) : `loss ${formatDefault(r.loss)}`;
      return i === 0 ? `${name}: ${value}${hasAccuracy ? ` ${metric}` : ""}` : `${name} ${hasAccuracy ? value : formatDefault(r.loss)}`;
    })
    .join(", ");
  const table = formatTable(
    ["", "loss", "perplexity", hasAccuracy ? metric : "accuracy", "examples"],
    present.map(([name, r]) => [name, r.loss, r.perplexity, percent(r.accuracy), r.examples]),
    { alignRight: [false, true, true, true, true] },
  );
  const truncated = Math.max(...present.map(([, r]) => r.truncated));
  const note = truncated > 0 ? `${truncated} examples were cut to --max-length\n` : "";
  return `${headline}\n\n${table}${note}`;
}

/** One row per learned vector, then what the numbers mean. */
export function inspectView(report: InspectReport): string {
  const table = formatTable(
    ["vector", "norm ratio", "nearest tokens (cosine)"],
    report.vectors.map((v) => [v.index, v.relativeNorm, v.nearest.map((t) => `${JSON.stringify(t.token)} ${t.cosine.toFixed(2)}`).join("  ")]),
    { alignRight: [true, true, false] },
  );
  const lines = [
    table,
    "norm ratio: the vector's length over the mean length of the vocabulary's embeddings (far above 1: unlike any token).",
    "cosine: how closely the vector points in a token's direction (1 the same, 0 unrelated, -1 opposite).",
  ];
  if (report.vectors.some((v) => v.start !== undefined)) lines.push("", refinementView(report.vectors));
  if (report.similarity) {
    const { flat, meanBestMatch } = report.similarity;
    lines.push(
      "",
      formatPairs([
        ["prompt similarity (flat)", flat],
        ["prompt similarity (mean best match)", meanBestMatch],
      ]).trimEnd(),
      "flat: the cosine of the two prompts as single long vectors, position by position (needs equal lengths).",
      "mean best match: for each vector of the first prompt, the best cosine with any vector of the second, averaged (order-free).",
    );
  }
  return lines.join("\n") + "\n";
}

/** A prompt started from a hard prompt: what each vector started as, how far it moved, and what it is nearest to now. */
function refinementView(vectors: InspectReport["vectors"]): string {
  const moved = vectors.filter((v) => v.start !== undefined && !v.start.stillNearest).length;
  const table = formatTable(
    ["vector", "started as", "moved (relative)", "cosine to start", "nearest now"],
    vectors.map((v) => [v.index, v.start === undefined ? null : JSON.stringify(v.start.token), v.start?.relativeDistance, v.start?.cosine, v.nearest[0] === undefined ? null : JSON.stringify(v.nearest[0].token)]),
    { alignRight: [true, false, true, true, false] },
  );
  return [
    `Refinement from the hard prompt: ${moved} of ${vectors.length} vectors are now nearer another token than the one they started as.`,
    table.trimEnd(),
    "moved (relative): the distance from the starting token's embedding over that embedding's length (0: unchanged).",
  ].join("\n");
}

/** The end of a training run: what was done and where it went. */
export function trainView(summary: Omit<TrainSummary, "params">, curve?: string): string {
  const best = summary.bestStep === null ? "- (no validation data)" : `step ${summary.bestStep}, loss ${formatDefault(summary.bestValidLoss!)}`;
  return formatPairs([
    ["steps", `${summary.steps}${summary.stoppedEarly ? " (stopped early: validation loss stopped improving)" : ""}`],
    ["final train loss", summary.finalLoss],
    ["best validation", best],
    ["examples", `${summary.trainExamples} train, ${summary.validExamples} validation${summary.truncated > 0 ? `, ${summary.truncated} cut to --max-length` : ""}`],
    ["adapter", `${summary.output}${summary.bestStep === null ? "" : ` (the best validation step's prompt)`}`],
    ["loss curve", curve],
  ]);
}

export function showView(s: AdapterSummary): string {
  return formatPairs([
    ["adapter", s.adapter],
    ["method", s.init === null ? s.method : `${s.method}, init ${s.init}`],
    ["base model", s.baseModel ?? "-"],
    ["virtual tokens", s.virtualTokens === null ? null : `${s.virtualTokens} × ${s.tokenDim}`],
    ["steps trained", s.steps],
    ["best step", s.bestStep === null ? null : `${s.bestStep} (validation loss ${formatDefault(s.bestValidLoss!)})`],
    // The first 16 hex digits tell runs apart at a glance; --json gives the whole digests.
    ...Object.entries(s.dataFingerprints ?? { data: "-" }).map(([what, digest]): [string, string] => [`fingerprint of ${what}`, digest.slice(0, 16)]),
    ["fingerprint of the base model", s.baseFingerprint?.slice(0, 16)],
    ["created", s.created],
    ["distilled from", s.distilled === null ? null : `a ${s.distilled.teacherPromptTokens}-token prompt (sha256 ${s.distilled.teacherPromptSha256.slice(0, 16)}): ${percent(s.distilled.greedy)} greedy agreement, ${percent(s.distilled.top1)} top-1, mean KL ${formatDefault(s.distilled.meanKl)} on ${s.distilled.heldOut} held-out inputs`],
  ]);
}

/** One row per method, and the bare model for reference; where the chart went. */
export function compareView(report: CompareReport): string {
  const table = formatTable(
    ["method", "trainable params", "valid loss", "accuracy", "train s", "tokens/s", "adapter KiB"],
    [
      ...report.results.map((r) => [r.method, r.trainableParameters, r.validLoss, percent(r.accuracy), r.trainSeconds, Math.round(r.tokensPerSecond), r.adapterBytes / 1024]),
      ["no prompt", 0, report.noPrompt.validLoss, percent(report.noPrompt.accuracy), null, null, null],
    ],
    { alignRight: [false, true, true, true, true, true, true] },
  );
  return `${table}\naccuracy against trainable parameters: ${report.chart}\n`;
}
