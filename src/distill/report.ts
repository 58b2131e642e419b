/**
 * What distillation reports: distill.json beside each student adapter (read by `show`), the
 * agreement-against-K chart, and the readable table.
 */
import { join } from "node:path";
import { writeFileAtomic } from "../util/fs.js";
import { svgChart } from "../report/plot.js";
import { formatPairs, formatTable, percent } from "../report/table.js";
import { DISTILL_RECORD, type Distilled } from "../report/adapter-summary.js";
import type { Agreement } from "./agreement.js";
import type { DistillReport, StudentReport } from "./distill.js";

export { DISTILL_RECORD };
export const DISTILL_CHART = "distill.svg";

/** Beside a distilled adapter (what `show` reads): where it came from and what it kept. */
export interface DistillRecord extends Distilled {
  into: string;
  numVirtualTokens: number;
}

/**
 * Greedy and top-1 agreement against the number of virtual tokens, the bare model as a floor; with both
 * forms, each form's agreement against the adapter's size, so equal sizes line up.
 */
export async function writeAgreementChart(dir: string, students: readonly StudentReport[], noPrompt: Agreement): Promise<string> {
  const forms = [...new Set(students.map((s) => s.into))];
  const bySize = forms.length > 1;
  const x = (s: StudentReport) => (bySize ? s.adapterBytes / 1024 : s.numVirtualTokens);
  const xs = students.map(x);
  const floor = (label: string, colour: string, y: number) => ({ label, colour, line: true, points: [Math.min(...xs), Math.max(...xs)].map((at) => ({ x: at, y: 100 * y })) });
  const colours = { prompt: ["#1f77b4", "#ff7f0e"], prefix: ["#2ca02c", "#d62728"] };
  const named = (form: string, what: string) => (bySize ? `${form}: ${what}` : what);
  const svg = svgChart({
    title: "Agreement with the teacher on held-out inputs",
    xLabel: bySize ? "adapter size (KiB)" : "virtual tokens (K)",
    yLabel: "agreement (%)",
    yFromZero: true,
    series: [
      ...forms.flatMap((form) => {
        const of = students.filter((s) => s.into === form);
        return [
          { label: named(form, "greedy exact match"), colour: colours[form][0], line: true, markers: true, points: of.map((s) => ({ x: x(s), y: 100 * s.greedy, label: percent(s.greedy) })) },
          { label: named(form, "next-token top-1"), colour: colours[form][1], line: true, markers: true, points: of.map((s) => ({ x: x(s), y: 100 * s.top1 })) },
        ];
      }),
      floor("no prompt: greedy", "#9ecae1", noPrompt.greedy),
      floor("no prompt: top-1", "#fdd0a2", noPrompt.top1),
    ],
  });
  const path = join(dir, DISTILL_CHART);
  await writeFileAtomic(path, svg);
  return path;
}

export function distillView(r: DistillReport): string {
  const t = r.teacher;
  const rows = [
    ["teacher (hard prompt)", t.tokensPerRequest, t.prefillMsPerRequest, "100%", "100%", 0, percent(t.accuracy), null],
    ...r.students.map((s) => [`${s.into} K=${s.numVirtualTokens}`, s.tokensPerRequest, s.prefillMsPerRequest, percent(s.greedy), percent(s.top1), s.meanKl, percent(s.accuracy), s.adapterBytes / 1024]),
    ["no prompt", r.noPrompt.tokensPerRequest, r.noPrompt.prefillMsPerRequest, percent(r.noPrompt.greedy), percent(r.noPrompt.top1), r.noPrompt.meanKl, percent(r.noPrompt.accuracy), null],
  ];
  const table = formatTable(["prompting", "tokens/request", "prefill ms/request", "greedy agree", "top-1 agree", "mean KL", "accuracy", "adapter KiB"], rows, {
    alignRight: [false, true, true, true, true, true, true, true],
  });
  const saved = r.students.map((s): [string, string] => [
    `K=${s.numVirtualTokens} saves`,
    `${(t.tokensPerRequest - s.tokensPerRequest).toFixed(1)} tokens and ${(t.prefillMsPerRequest - s.prefillMsPerRequest).toFixed(3)} ms of prefill per request (${(t.prefillMsPerRequest / s.prefillMsPerRequest).toFixed(2)}× faster) → ${s.output}`,
  ]);
  const about = formatPairs([
    ["teacher prompt", `${t.promptTokens} tokens, sha256 ${t.promptSha256.slice(0, 16)}`],
    ["teacher outputs", `${t.continuations} continuations of ${r.trainInputs} inputs, distributions ${t.distributions}; ${r.teacherWork.cached ? "read from the cache" : `${r.teacherWork.generated} generated, ${r.teacherWork.forwardPasses} forward passes`}`],
    ["held-out inputs", r.heldOut],
    ...saved,
    ["chart", r.chart],
  ]);
  return `${table}\n${about}${r.interrupted ? "interrupted: resume with the same command and --resume\n" : ""}`;
}
