/**
 * Methods side by side on the same model and data: each is trained with the same trainer settings
 * (its own trainer defaults where the user sets none, e.g. LoRA's learning rate) and evaluated on the
 * same held-out data, and the table says what each costs and gives — trainable parameters, validation
 * loss, accuracy, training time, tokens/s, adapter size on disk — with compare.svg plotting accuracy
 * against trainable parameters, one point per method.
 */
import { existsSync, promises as fsp } from "node:fs";
import { join } from "node:path";
import { fail } from "./util/errors.js";
import { writeFileAtomic } from "./util/fs.js";
import { methodByName } from "./peft/index.js";
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from "./peft/adapter.js";
import { svgChart } from "./report/plot.js";
import { evaluate, train, type TrainOptions } from "./workflows.js";

export const COMPARE_SVG = "compare.svg";

export interface CompareOptions {
  model: string;
  data: string;
  /** Held-out data for validation during training and for the comparison; without it, a share of --data. */
  valid?: string;
  /** Registered method names, e.g. ["prompt", "lora"]. */
  methods: string[];
  /** Each method's run goes to `<output>/<method>`; the chart to `<output>/compare.svg`. */
  output: string;
  /** Trainer settings shared by every method (steps, lr, batchSize, …) and method options by key. */
  settings?: Record<string, unknown>;
  /** Per method, settings that only it gets (e.g. { lora: { lr: 2e-4 } }). */
  perMethod?: Record<string, Record<string, unknown>>;
  /** Classify by these completions instead of exact match. */
  choices?: string[];
  onLog?: (line: string) => void;
}

export interface MethodResult {
  method: string;
  trainableParameters: number;
  validLoss: number;
  /** Exact match (or choice accuracy) on the held-out data; null when it has no prompt/completion examples. */
  accuracy: number | null;
  trainSeconds: number;
  /** Training tokens per second, over all steps. */
  tokensPerSecond: number;
  /** adapter_config.json + adapter_model.safetensors. */
  adapterBytes: number;
  adapter: string;
}

export interface CompareReport {
  results: MethodResult[];
  /** Exact match (or choice accuracy) of the bare model on the same data. */
  noPrompt: { validLoss: number; accuracy: number | null };
  chart: string;
}

export async function compareMethods(options: CompareOptions): Promise<CompareReport> {
  if (options.methods.length === 0) fail("usage", "give at least one method to compare", { field: "--methods" });
  for (const m of options.methods) methodByName(m, "--methods");
  const valid = options.valid;
  if (valid === undefined) fail("usage", "compare needs held-out data to compare on", { field: "--valid" });
  const results: MethodResult[] = [];
  for (const method of options.methods) {
    const output = join(options.output, method);
    let tokens = 0;
    let busySeconds = 0;
    const started = performance.now();
    options.onLog?.(`training ${method} → ${output}`);
    const trained = await train({
      ...options.settings,
      ...options.perMethod?.[method],
      method,
      model: options.model,
      data: options.data,
      valid,
      output,
      overwrite: true,
      onStep: (e) => {
        // Summed over steps: the run's training rate, without compiling, evaluating or saving.
        tokens += e.tokensPerSecond * e.seconds;
        busySeconds += e.seconds;
      },
      onLog: options.onLog,
    } as TrainOptions);
    const trainSeconds = (performance.now() - started) / 1000;
    const report = await evaluate({ model: options.model, data: valid, adapter: output, choices: options.choices, onWarning: options.onLog });
    results.push({
      method,
      trainableParameters: [...trained.params.values()].reduce((sum, p) => sum + p.data.length, 0),
      validLoss: report.loss,
      accuracy: report.accuracy,
      trainSeconds,
      tokensPerSecond: busySeconds > 0 ? tokens / busySeconds : 0,
      adapterBytes: await sizeOf(output, [ADAPTER_CONFIG, ADAPTER_WEIGHTS]),
      adapter: output,
    });
  }
  const bare = await evaluate({ model: options.model, data: valid, choices: options.choices });
  const chart = join(options.output, COMPARE_SVG);
  await writeFileAtomic(chart, compareSvg(results));
  return { results, noPrompt: { validLoss: bare.loss, accuracy: bare.accuracy }, chart };
}

/** Accuracy (or, without accuracies, validation loss) against trainable parameters on a log axis. */
export function compareSvg(results: readonly MethodResult[]): string {
  const byAccuracy = results.every((r) => r.accuracy !== null);
  return svgChart({
    title: byAccuracy ? "Accuracy against trainable parameters" : "Validation loss against trainable parameters",
    xLabel: "trainable parameters",
    yLabel: byAccuracy ? "held-out accuracy (%)" : "validation loss (nats per token)",
    xScale: "log",
    series: [
      {
        label: "one point per method",
        colour: "#1f77b4",
        markers: true,
        points: results.map((r) => ({ x: r.trainableParameters, y: byAccuracy ? 100 * r.accuracy! : r.validLoss, label: r.method })),
      },
    ],
  });
}

async function sizeOf(dir: string, files: string[]): Promise<number> {
  let total = 0;
  for (const f of files) if (existsSync(join(dir, f))) total += (await fsp.stat(join(dir, f))).size;
  return total;
}
