/**
 * The training curve as a plain SVG file a user opens in any browser or image viewer: train loss
 * per step as a line, validation loss as marked points joined by a line, axes with ticks, a legend.
 * Drawn from the run's train_log.jsonl, so a resumed run's curve covers every step.
 */
import { existsSync, promises as fsp } from "node:fs";
import { join } from "node:path";
import { fail } from "../util/errors.js";
import { writeFileAtomic } from "../util/fs.js";

export const CURVE_FILE = "curve.svg";
const LOG_FILE = "train_log.jsonl";

export interface LossPoint {
  step: number;
  loss: number;
  validLoss?: number;
}

/** One point per step; a step logged twice (a resume before the log was cut back) keeps its last line. */
export async function readLossLog(path: string): Promise<LossPoint[]> {
  const byStep = new Map<number, LossPoint>();
  const lines = (await fsp.readFile(path, "utf8")).split("\n");
  lines.forEach((text, i) => {
    if (text.trim() === "") return;
    let event: { step?: unknown; loss?: unknown; validLoss?: unknown };
    try {
      event = JSON.parse(text);
    } catch {
      fail("file", "expected one JSON object per line", { file: path, line: i + 1 });
    }
    if (typeof event.step !== "number" || typeof event.loss !== "number") {
      fail("file", 'expected {"step": number, "loss": number, ...}', { file: path, line: i + 1 });
    }
    byStep.set(event.step, { step: event.step, loss: event.loss, ...(typeof event.validLoss === "number" ? { validLoss: event.validLoss } : {}) });
  });
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

/** Writes `<runDir>/curve.svg` from `<runDir>/train_log.jsonl`; returns its path, or undefined when nothing was logged. */
export async function writeLossCurve(runDir: string): Promise<string | undefined> {
  const logPath = join(runDir, LOG_FILE);
  if (!existsSync(logPath)) return undefined;
  const points = await readLossLog(logPath);
  if (points.length === 0) return undefined;
  const path = join(runDir, CURVE_FILE);
  await writeFileAtomic(path, lossCurveSvg(points));
  return path;
}

const WIDTH = 720;
const HEIGHT = 440;
const MARGIN = { left: 70, right: 24, top: 44, bottom: 56 };
const TRAIN_COLOUR = "#1f77b4";
const VALID_COLOUR = "#d62728";

export function lossCurveSvg(points: readonly LossPoint[]): string {
  const valid = points.filter((p): p is Required<LossPoint> => p.validLoss !== undefined);
  const losses = [...points.map((p) => p.loss), ...valid.map((p) => p.validLoss)].filter(Number.isFinite);
  const xTicks = niceTicks(Math.min(0, points[0].step), points[points.length - 1].step);
  const yTicks = niceTicks(Math.min(0, ...losses), Math.max(...losses));
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (step: number) => MARGIN.left + ((step - x0) / (x1 - x0 || 1)) * plotW;
  const y = (loss: number) => MARGIN.top + plotH - ((loss - y0) / (y1 - y0 || 1)) * plotH;
  const path = (xs: { step: number; value: number }[]) =>
    xs.map((p, i) => `${i === 0 ? "M" : "L"}${x(p.step).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
  const bottom = MARGIN.top + plotH;

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="15">Loss per step</text>`,
  ];
  // Grid lines and tick labels, then the axes over them.
  for (const t of yTicks) {
    parts.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${MARGIN.left - 8}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${tickLabel(t)}</text>`);
  }
  for (const t of xTicks) {
    parts.push(`<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${bottom}" y2="${bottom + 5}" stroke="black"/>`);
    parts.push(`<text x="${x(t).toFixed(1)}" y="${bottom + 19}" text-anchor="middle">${tickLabel(t)}</text>`);
  }
  parts.push(
    `<path d="M${MARGIN.left},${MARGIN.top} V${bottom} H${MARGIN.left + plotW}" fill="none" stroke="black"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 12}" text-anchor="middle" font-size="13">step</text>`,
    `<text transform="translate(18 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="13">loss (nats per token)</text>`,
    `<path d="${path(points.map((p) => ({ step: p.step, value: p.loss })))}" fill="none" stroke="${TRAIN_COLOUR}" stroke-width="1.5"/>`,
  );
  if (valid.length > 0) {
    parts.push(`<path d="${path(valid.map((p) => ({ step: p.step, value: p.validLoss })))}" fill="none" stroke="${VALID_COLOUR}" stroke-width="2"/>`);
    for (const p of valid) parts.push(`<circle cx="${x(p.step).toFixed(1)}" cy="${y(p.validLoss).toFixed(1)}" r="3.5" fill="${VALID_COLOUR}"/>`);
  }
  // The legend, top right inside the plot, on a white box so lines under it do not show through.
  const entries: [string, string][] = [["train loss", TRAIN_COLOUR], ...(valid.length > 0 ? [["validation loss", VALID_COLOUR] as [string, string]] : [])];
  const lx = MARGIN.left + plotW - 150;
  parts.push(`<rect x="${lx}" y="${MARGIN.top + 8}" width="140" height="${10 + 20 * entries.length}" fill="white" stroke="#999"/>`);
  entries.forEach(([label, colour], i) => {
    const ly = MARGIN.top + 23 + 20 * i;
    parts.push(`<line x1="${lx + 10}" x2="${lx + 34}" y1="${ly}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`);
    if (colour === VALID_COLOUR) parts.push(`<circle cx="${lx + 22}" cy="${ly}" r="3.5" fill="${colour}"/>`);
    parts.push(`<text x="${lx + 42}" y="${ly + 4}">${label}</text>`);
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

function tickLabel(t: number): string {
  return Number(t.toPrecision(6)).toString();
}
