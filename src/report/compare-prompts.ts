/** What `softprompt compare-prompts` prints (an aligned table and the verdict) and the HTML report it writes. */
import type { ComparePromptsReport, Interval } from "../compare-prompts.js";
import { formatTable } from "./table.js";
import { escapeHtml, htmlPage, htmlTable, svgIntervalBars, type HtmlCell } from "./html.js";
import { svgChart } from "./plot.js";

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const range = (i: Interval, f: (x: number) => string) => `[${f(i.low)}, ${f(i.high)}]`;
const loss = (x: number) => x.toFixed(4);
const ms = (x: number) => x.toFixed(3);
const tokens = (x: number) => x.toFixed(1);

export function comparePromptsView(r: ComparePromptsReport): string {
  const table = formatTable(
    ["", "exact match", "95% interval", "loss", "95% interval", "tokens/request", "prefill ms/request"],
    r.ways.map((w) => [w.name, pct(w.exactMatch.value), range(w.exactMatch, pct), loss(w.loss.value), range(w.loss, loss), tokens(w.tokensPerRequest), ms(w.prefillMsPerRequest)]),
    { alignRight: [false, true, true, true, true, true, true] },
  );
  const lines = [
    `${r.examples} held-out rows of ${r.valid}; intervals from ${r.resamples} bootstrap resamples (seed ${r.seed})`,
    "",
    table.trimEnd(),
    "",
    ...r.leftOut.map((l) => `left out: ${l.name} (${l.reason})`),
    r.verdict,
    `report: ${r.html}  JSON: ${r.json}`,
  ];
  return lines.join("\n") + "\n";
}

/** One page: the table, exact match and loss as bars with their intervals, tokens per request against exact match. */
export function comparePromptsHtml(r: ComparePromptsReport): string {
  const cell = (text: string, key: string): HtmlCell => ({ text, key });
  const rows = r.ways.map((w, i): HtmlCell[] => [
    w.name,
    w.description,
    cell(pct(w.exactMatch.value), `ways[${i}].exactMatch.value`),
    cell(pct(w.exactMatch.low), `ways[${i}].exactMatch.low`),
    cell(pct(w.exactMatch.high), `ways[${i}].exactMatch.high`),
    cell(loss(w.loss.value), `ways[${i}].loss.value`),
    cell(loss(w.loss.low), `ways[${i}].loss.low`),
    cell(loss(w.loss.high), `ways[${i}].loss.high`),
    cell(tokens(w.tokensPerRequest), `ways[${i}].tokensPerRequest`),
    cell(ms(w.prefillMsPerRequest), `ways[${i}].prefillMsPerRequest`),
  ]);
  const bars = (pick: (w: ComparePromptsReport["ways"][number]) => Interval, scale: number) =>
    r.ways.map((w) => ({ label: w.name, value: scale * pick(w).value, low: scale * pick(w).low, high: scale * pick(w).high }));
  const body = [
    `<p>Model <code>${escapeHtml(r.model)}</code>; training data <code>${escapeHtml(r.data)}</code>; ${r.examples} held-out rows of <code>${escapeHtml(r.valid)}</code>. Intervals: 95%, from ${r.resamples} bootstrap resamples of the held-out rows (seed ${r.seed}).</p>`,
    htmlTable(["way", "before each input", "exact match", "low", "high", "loss", "low", "high", "tokens/request", "prefill ms/request"], rows),
    `<p class="verdict">${escapeHtml(r.verdict)}</p>`,
    ...r.leftOut.map((l) => `<p class="note">Left out: ${escapeHtml(l.name)} (${escapeHtml(l.reason)}).</p>`),
    `<figure>${svgIntervalBars({ title: "Exact match with 95% intervals", yLabel: "exact match (%)", bars: bars((w) => w.exactMatch, 100) })}</figure>`,
    `<figure>${svgIntervalBars({ title: "Loss with 95% intervals (lower is better)", yLabel: "nats per answer token", bars: bars((w) => w.loss, 1), colour: "#ff7f0e" })}</figure>`,
    `<figure>${svgChart({
      title: "What each way costs and gives",
      xLabel: "tokens per request (prefilled positions)",
      yLabel: "exact match (%)",
      series: [{ label: "one point per way", colour: "#2ca02c", markers: true, points: r.ways.map((w) => ({ x: w.tokensPerRequest, y: 100 * w.exactMatch.value, label: w.name })) }],
    })}</figure>`,
  ];
  return htmlPage("Ways of prompting compared", body.join("\n"));
}
