/**
 * Charts as plain SVG a user opens in any browser or image viewer: a title, axes with round-numbered
 * ticks (linear, or powers of ten for counts that span magnitudes), grid lines, series drawn as lines
 * and/or marked points (each point may carry a label), and a legend. No browser needed to make them.
 */
export interface Series {
  label: string;
  colour: string;
  points: { x: number; y: number; label?: string }[];
  /** Join the points with a line. */
  line?: boolean;
  /** Mark each point with a dot. */
  markers?: boolean;
}

export interface Chart {
  title: string;
  xLabel: string;
  yLabel: string;
  /** "log": ticks at powers of ten (every x must be > 0). */
  xScale?: "linear" | "log";
  /** Start the y axis at 0 even when every value is far above it. */
  yFromZero?: boolean;
  series: Series[];
}

const WIDTH = 720;
const HEIGHT = 440;
const MARGIN = { left: 70, right: 24, top: 44, bottom: 56 };

export function svgChart(chart: Chart): string {
  const points = chart.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const log = chart.xScale === "log";
  const fx = (v: number) => (log ? Math.log10(v) : v);
  const xs = points.map((p) => fx(p.x));
  const ys = points.map((p) => p.y);
  const xTicks = log ? powerTicks(Math.min(...xs), Math.max(...xs)) : niceTicks(Math.min(0, ...xs), Math.max(...xs));
  const yTicks = niceTicks(chart.yFromZero === false ? Math.min(...ys) : Math.min(0, ...ys), Math.max(...ys));
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const px = (v: number) => MARGIN.left + ((fx(v) - x0) / (x1 - x0 || 1)) * plotW;
  const py = (v: number) => MARGIN.top + plotH - ((v - y0) / (y1 - y0 || 1)) * plotH;
  const bottom = MARGIN.top + plotH;

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="15">${escape(chart.title)}</text>`,
  ];
  // Grid lines and tick labels, then the axes over them.
  for (const t of yTicks) {
    parts.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${py(t).toFixed(1)}" y2="${py(t).toFixed(1)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${MARGIN.left - 8}" y="${(py(t) + 4).toFixed(1)}" text-anchor="end">${tickLabel(t)}</text>`);
  }
  for (const t of xTicks) {
    const at = MARGIN.left + ((t - x0) / (x1 - x0 || 1)) * plotW;
    parts.push(`<line x1="${at.toFixed(1)}" x2="${at.toFixed(1)}" y1="${bottom}" y2="${bottom + 5}" stroke="black"/>`);
    parts.push(`<text x="${at.toFixed(1)}" y="${bottom + 19}" text-anchor="middle">${log ? tickLabel(10 ** t) : tickLabel(t)}</text>`);
  }
  parts.push(
    `<path d="M${MARGIN.left},${MARGIN.top} V${bottom} H${MARGIN.left + plotW}" fill="none" stroke="black"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 12}" text-anchor="middle" font-size="13">${escape(chart.xLabel)}</text>`,
    `<text transform="translate(18 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="13">${escape(chart.yLabel)}</text>`,
  );
  for (const s of chart.series) {
    const shown = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
    if (s.line && shown.length > 0) {
      const d = shown.map((p, i) => `${i === 0 ? "M" : "L"}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(" ");
      parts.push(`<path d="${d}" fill="none" stroke="${s.colour}" stroke-width="${s.markers ? 2 : 1.5}"/>`);
    }
    for (const p of shown) {
      if (s.markers) parts.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="${s.line ? 3.5 : 5}" fill="${s.colour}"/>`);
      if (p.label !== undefined) parts.push(`<text x="${(px(p.x) + 8).toFixed(1)}" y="${(py(p.y) - 8).toFixed(1)}">${escape(p.label)}</text>`);
    }
  }
  // The legend, top right inside the plot, on a white box so lines under it do not show through.
  const lx = MARGIN.left + plotW - 170;
  parts.push(`<rect x="${lx}" y="${MARGIN.top + 8}" width="160" height="${10 + 20 * chart.series.length}" fill="white" stroke="#999"/>`);
  chart.series.forEach((s, i) => {
    const ly = MARGIN.top + 23 + 20 * i;
    if (s.line) parts.push(`<line x1="${lx + 10}" x2="${lx + 34}" y1="${ly}" y2="${ly}" stroke="${s.colour}" stroke-width="2"/>`);
    if (s.markers) parts.push(`<circle cx="${lx + 22}" cy="${ly}" r="3.5" fill="${s.colour}"/>`);
    parts.push(`<text x="${lx + 42}" y="${ly + 4}">${escape(s.label)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

/** About five round-numbered ticks (steps of 1, 2 or 5 × 10^k) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / target;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  const first = Math.floor(lo / step) * step;
  const ticks: number[] = [];
  for (let t = first; t < hi + step * 0.999; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

/** Whole powers of ten (as exponents) covering [lo, hi] given in log10. */
function powerTicks(lo: number, hi: number): number[] {
  const first = Math.floor(lo);
  const last = Math.max(Math.ceil(hi), first + 1);
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

function tickLabel(t: number): string {
  return Math.abs(t) >= 1e4 ? t.toExponential(0).replace("e+", "e") : Number(t.toPrecision(6)).toString();
}

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
