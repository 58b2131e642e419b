/**
 * Self-contained HTML reports: one file with its styles and its plots inline (SVG), no scripts and no
 * network, so it opens the same from a disk, a CI artifact or an email. Table cells that show a number
 * of the report's JSON name it (`data-key="ways[1].loss.low"`), so a reader or a test can trace each one.
 */

export function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const STYLE = `body{font-family:sans-serif;margin:2em auto;max-width:960px;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{padding:4px 10px;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums}figure{margin:1.5em 0}p.note{color:#555}`;

export function htmlPage(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body></html>
`;
}

/** A cell: plain text, or a number's text with the JSON path it shows. */
export type HtmlCell = string | { text: string; key: string };

export function htmlTable(headers: string[], rows: HtmlCell[][]): string {
  const cell = (c: HtmlCell) => (typeof c === "string" ? `<td>${escapeHtml(c)}</td>` : `<td class="n" data-key="${escapeHtml(c.key)}">${escapeHtml(c.text)}</td>`);
  return `<table>
<thead><tr>${headers.map((h) => `<th>${escapeHtml(h)}</th>`).join("")}</tr></thead>
<tbody>
${rows.map((r) => `<tr>${r.map(cell).join("")}</tr>`).join("\n")}
</tbody></table>`;
}

export interface IntervalBar {
  label: string;
  value: number;
  low: number;
  high: number;
}

/** Vertical bars, one per label, each with its interval drawn as a whisker. */
export function svgIntervalBars(chart: { title: string; yLabel: string; bars: IntervalBar[]; colour?: string }): string {
  const W = 720;
  const H = 360;
  const M = { left: 70, right: 20, top: 40, bottom: 50 };
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const top = Math.max(...chart.bars.map((b) => b.high), 0) || 1;
  const y = (v: number) => M.top + plotH - (v / top) * plotH;
  const slot = plotW / Math.max(chart.bars.length, 1);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="interval-bars" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${escapeHtml(chart.title)}</text>`,
    `<path d="M${M.left},${M.top} V${M.top + plotH} H${M.left + plotW}" fill="none" stroke="black"/>`,
    `<text x="${M.left - 8}" y="${y(top) + 4}" text-anchor="end">${formatTick(top)}</text>`,
    `<text x="${M.left - 8}" y="${y(0) + 4}" text-anchor="end">0</text>`,
    `<text transform="translate(18 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="13">${escapeHtml(chart.yLabel)}</text>`,
  ];
  chart.bars.forEach((b, i) => {
    const cx = M.left + slot * (i + 0.5);
    const w = Math.min(60, slot * 0.6);
    parts.push(
      `<rect class="bar" x="${(cx - w / 2).toFixed(1)}" y="${y(b.value).toFixed(1)}" width="${w.toFixed(1)}" height="${(y(0) - y(b.value)).toFixed(1)}" fill="${chart.colour ?? "#1f77b4"}"><title>${escapeHtml(`${b.label}: ${b.value} [${b.low}, ${b.high}]`)}</title></rect>`,
      `<path class="interval" d="M${cx},${y(b.low).toFixed(1)} V${y(b.high).toFixed(1)} M${cx - 8},${y(b.low).toFixed(1)} H${cx + 8} M${cx - 8},${y(b.high).toFixed(1)} H${cx + 8}" stroke="black" stroke-width="1.5" fill="none"/>`,
      `<text x="${cx}" y="${M.top + plotH + 18}" text-anchor="middle">${escapeHtml(b.label)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

const formatTick = (v: number) => Number(v.toPrecision(3)).toString();
