/** The readable report of `softprompt data check`: counts first, then each problem with its lines. */
import type { DataCheckReport, DuplicateGroup } from "../data/check.js";
import { formatDefault, formatPairs, formatTable } from "./table.js";

/** Lines listed per problem before "and N more" (--json lists them all). */
const SHOWN = 5;

export function dataCheckView(r: DataCheckReport): string {
  const kinds = Object.entries(r.kinds).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`).join(", ");
  const b = r.balance;
  const out: string[] = [
    formatPairs([
      ["file", r.file],
      ["examples", `${r.examples} (${kinds})`],
      ["distinct answers", r.labels.distinct],
      ["exact duplicates", `${r.duplicates.exact.reduce((n, g) => n + g.lines.length - 1, 0)} repeated rows in ${r.duplicates.exact.length} groups`],
      ["near duplicates", `${r.duplicates.near.length} groups (same up to case, spacing and punctuation)`],
      ["conflicting answers", `${r.conflicts.length} inputs with more than one answer`],
      ["positives / negatives", `${b.positives} / ${b.negatives}${b.pairs > 0 ? ` (${b.pairs} preference pairs count on both sides)` : ""}`],
      ["suggested weights", b.suggestedWeights === null ? "- (one side is empty)" : `positive ${formatDefault(b.suggestedWeights.positive)}, negative ${formatDefault(b.suggestedWeights.negative)} (each side then weighs half)`],
    ]).trimEnd(),
  ];
  if (r.labels.top.length > 0) {
    out.push("", `most frequent answers (${r.labels.top.length} of ${r.labels.distinct}):`, formatTable(["answer", "rows", "share"], r.labels.top.map((l) => [JSON.stringify(l.label), l.count, `${((100 * l.count) / r.examples).toFixed(1)}%`]), { alignRight: [false, true, true] }).trimEnd());
  }
  const groups = (title: string, gs: DuplicateGroup[]) => {
    if (gs.length === 0) return;
    out.push("", `${title}:`, ...gs.slice(0, SHOWN).map((g) => `  lines ${g.lines.join(", ")}: ${JSON.stringify(g.text)}`));
    if (gs.length > SHOWN) out.push(`  and ${gs.length - SHOWN} more (--json lists them all)`);
  };
  groups("exact duplicates", r.duplicates.exact);
  groups("near duplicates", r.duplicates.near);
  groups("conflicting answers (same input)", r.conflicts);
  if (r.leakage !== undefined) {
    const { leaks, valid, validExamples } = r.leakage;
    out.push("", `leakage: ${leaks.length} of ${validExamples} rows of ${valid} have an input that is also in the training file`);
    out.push(...leaks.slice(0, SHOWN).map((l) => `  ${valid}:${l.validLine} = ${r.file}:${l.trainLine} (${l.kind}): ${JSON.stringify(l.input)}`));
    if (leaks.length > SHOWN) out.push(`  and ${leaks.length - SHOWN} more (--json lists them all)`);
  }
  if (r.lengths !== undefined) {
    const l = r.lengths;
    out.push("", `tokens per row: min ${l.min}, median ${l.median}, 95th percentile ${l.p95}, max ${l.max}; ${l.truncated.length} rows over --max-length ${l.maxLength} would be cut`);
    out.push(...l.truncated.slice(0, SHOWN).map((t) => `  line ${t.line}: ${t.tokens} tokens`));
    if (l.truncated.length > SHOWN) out.push(`  and ${l.truncated.length - SHOWN} more (--json lists them all)`);
  }
  return out.join("\n") + "\n";
}
