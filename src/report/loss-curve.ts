/**
 * The training curve as a plain SVG file a user opens in any browser or image viewer: train loss
 * per step as a line, validation loss as marked points joined by a line, axes with ticks, a legend.
 * Drawn from the run's train_log.jsonl, so a resumed run's curve covers every step.
 */
import { existsSync, promises as fsp } from "node:fs";
import { join } from "node:path";
import { fail } from "../util/errors.js";
import { writeFileAtomic } from "../util/fs.js";
import { svgChart } from "./plot.js";

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

const TRAIN_COLOUR = "#1f77b4";
const VALID_COLOUR = "#d62728";

export function lossCurveSvg(points: readonly LossPoint[]): string {
  const valid = points.filter((p): p is Required<LossPoint> => p.validLoss !== undefined);
  return svgChart({
    title: "Loss per step",
    xLabel: "step",
    yLabel: "loss (nats per token)",
    series: [
      { label: "train loss", colour: TRAIN_COLOUR, line: true, points: points.map((p) => ({ x: p.step, y: p.loss })) },
      ...(valid.length > 0 ? [{ label: "validation loss", colour: VALID_COLOUR, line: true, markers: true, points: valid.map((p) => ({ x: p.step, y: p.validLoss })) }] : []),
    ],
  });
}
