/** The readable output of `softprompt classify`: accuracy (and calibrated accuracy), per label, and the confusion counts. */
import type { Classification, ClassifyReport } from "../eval/classify.js";
import { formatTable, percent } from "./table.js";

export function classifyView(report: ClassifyReport): string {
  const runs: [string, Classification][] = [["uncalibrated", report.uncalibrated], ...(report.calibrated ? [["calibrated", report.calibrated] as [string, Classification]] : [])];
  const headline = runs.map(([name, c]) => `${name} ${percent(c.accuracy)}`).join(", ");
  const perLabel = formatTable(
    ["label", "examples", ...runs.map(([name]) => name)],
    report.labels.map((l) => [l, report.uncalibrated.perLabel[l].examples, ...runs.map(([, c]) => percent(c.perLabel[l].accuracy))]),
    { alignRight: [false, true, ...runs.map(() => true)] },
  );
  const confusion = runs.map(([name, c]) => `confusion (${name}; rows: true label, columns: predicted)\n` + formatTable(["", ...report.labels], report.labels.map((t) => [t, ...report.labels.map((p) => c.confusion[t][p])]), { alignRight: [false, ...report.labels.map(() => true)] }));
  return `accuracy on ${report.examples} examples: ${headline}\n\n${perLabel}\n${confusion.join("\n")}`;
}
