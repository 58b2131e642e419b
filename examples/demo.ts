/**
 * The main job (`npm run demo`): one frozen model, four tasks, one soft prompt per task, then one
 * batch that mixes the prompts, and soft / hard / no prompt side by side on held-out inputs.
 *
 * The model (examples/models/tiny-tasks, see examples/tasks.ts) learned four skills behind tags
 * (`reverse: 3 1 4 = ` → `4 1 3`). The training files have no tag (`3 1 4 = ` → `4 1 3`), so without
 * a prompt the model can only guess the task; a soft prompt trained for a second or two finds the skill.
 *
 * Only the public API (src/index.ts) is used, as a user would. `runDemo` returns the numbers and
 * prints nothing; `printDemo` lays them out in one screen.
 */
import { rmSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { SoftpromptError, evaluate, generate, loadModel, loadSoftPrompt, train, type AdapterPrompt } from "../src/index.js";
import { TAGS, TASKS, type Task, completionText } from "./tasks.js";

const MODEL = fileURLToPath(new URL("./models/tiny-tasks", import.meta.url));
const dataFile = (task: Task, split: "train" | "valid") => fileURLToPath(new URL(`./data/${task}.${split}.jsonl`, import.meta.url));

/** The options the demo gives train() besides the files (the CLI's --num-virtual-tokens, --steps …). */
export interface DemoSettings {
  numVirtualTokens: number;
  steps: number;
  lr: number;
  batchSize: number;
  seed?: number;
}

/**
 * Measured on 2 cores: about 1 s per prompt, and sort (the hardest task) at 98–100% held-out exact
 * match over seeds 0–3; 100 steps left sort at 94%, lr 0.3 made it unstable.
 */
export const DEMO_SETTINGS: DemoSettings = { numVirtualTokens: 20, steps: 200, lr: 0.1, batchSize: 8 };

/** The digits every row of the mixed batch continues: one input, a different answer per prompt. */
export const MIXED_INPUT: readonly number[] = [3, 1, 4, 1, 5];

export interface DemoOptions {
  /** Where the prompts are written, one folder per task (replaced on each run). */
  outputDir?: string;
  /** Training settings over DEMO_SETTINGS. */
  settings?: Partial<DemoSettings>;
}

export interface TrainedPrompt {
  task: Task;
  dir: string;
  steps: number;
  seconds: number;
}

export interface MixedRow {
  input: string;
  /** The task whose soft prompt the row used; undefined for the row without a prompt. */
  prompt?: Task;
  output: string;
  /** Whether the output is the prompt's task done right; undefined for the row without a prompt. */
  right?: boolean;
  /** The tasks whose answer the output is (without a prompt the model guesses one, or none). */
  matches: Task[];
}

/** Exact match on one task's held-out file, three ways of prompting the same frozen model. */
export interface Comparison {
  task: Task;
  examples: number;
  soft: number;
  hard: number;
  none: number;
}

export interface DemoResult {
  settings: DemoSettings;
  prompts: TrainedPrompt[];
  mixed: MixedRow[];
  comparison: Comparison[];
  seconds: number;
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const started = performance.now();
  const outputDir = options.outputDir ?? "runs/demo";
  const settings = { ...DEMO_SETTINGS, ...options.settings };

  // 1. One soft prompt per task, each trained on its untagged examples; the model's weights never change.
  const prompts: TrainedPrompt[] = [];
  for (const task of TASKS) {
    const dir = join(outputDir, task);
    rmSync(dir, { recursive: true, force: true }); // the demo's own folder: a fresh run each time, never a resume
    const t0 = performance.now();
    const summary = await train({ ...settings, model: MODEL, data: dataFile(task, "train"), valid: dataFile(task, "valid"), output: dir });
    prompts.push({ task, dir, steps: summary.steps, seconds: (performance.now() - t0) / 1000 });
  }

  // 2. The model loaded once, one generate() call: the same input in every row, each with its own prompt.
  const model = await loadModel(MODEL);
  const soft = new Map<Task, AdapterPrompt>();
  for (const p of prompts) soft.set(p.task, (await loadSoftPrompt(p.dir, model, MODEL)).prompt);
  const input = `${MIXED_INPUT.join(" ")} = `;
  const rowTasks: (Task | undefined)[] = [...TASKS, undefined];
  const generations = await generate(
    model.lm,
    model.tokenizer,
    rowTasks.map((task) => ({ text: input, prompt: task === undefined ? undefined : soft.get(task), maxNewTokens: MIXED_INPUT.length + 1 })),
  );
  const mixed = rowTasks.map((task, i): MixedRow => {
    const output = (generations[i].text ?? "").trim();
    const matches = TASKS.filter((t) => completionText(t, MIXED_INPUT) === output);
    return { input, prompt: task, output, right: task === undefined ? undefined : matches.includes(task), matches };
  });

  // 3. Held-out exact match: the soft prompt, the task's tag as a hard prompt, and no prompt.
  const comparison: Comparison[] = [];
  for (const p of prompts) {
    const data = dataFile(p.task, "valid");
    const report = await evaluate({ model: MODEL, data, adapter: p.dir, compareText: `${TAGS[p.task]} `, batchSize: 100 });
    const { text, none } = report.baselines;
    // Exact match needs {"prompt","completion"} lines; any other kind of example leaves it null.
    if (report.accuracy === null || text?.accuracy == null || none?.accuracy == null) {
      throw new SoftpromptError("data", "has no prompt/completion examples to score by exact match", { file: data });
    }
    comparison.push({ task: p.task, examples: report.examples, soft: report.accuracy, hard: text.accuracy, none: none.accuracy });
  }
  return { settings, prompts, mixed, comparison, seconds: (performance.now() - started) / 1000 };
}

const pct = (x: number) => `${Math.round(x * 100)}%`.padStart(5);

/** One screen: a one-line explanation before each part. */
export function printDemo(r: DemoResult, log: (line: string) => void = console.log): void {
  const trainSeconds = r.prompts.reduce((s, p) => s + p.seconds, 0);
  log("A soft prompt is a few learned vectors put before the input; the model itself stays frozen.");
  log(`Model: ${relative(process.cwd(), MODEL)}, which knows copy, reverse, sort, increment behind a tag ("reverse: ").`);
  log("");
  log(`1. One prompt per task (${r.settings.numVirtualTokens} vectors, ${r.settings.steps} steps), trained on untagged data: "3 1 4 = " → "4 1 3".`);
  for (const p of r.prompts) log(`   ${p.task.padEnd(10)} ${p.seconds.toFixed(1).padStart(4)} s  → ${p.dir}`);
  log("");
  log("2. One generate() call, one batch: the same input in every row, each row with its own prompt.");
  log(`   ${"input".padEnd(12)} ${"prompt".padEnd(10)} ${"output".padEnd(10)} right?`);
  for (const m of r.mixed) {
    const verdict = m.right === undefined ? `(no task given: ${m.matches.length > 0 ? `it guessed ${m.matches.join("/")}` : "no task's answer"})` : m.right ? "right" : "WRONG";
    log(`   ${m.input.padEnd(12)} ${(m.prompt ?? "none").padEnd(10)} ${m.output.padEnd(10)} ${verdict}`);
  }
  log("");
  log(`3. Exact match on ${r.comparison[0]?.examples ?? 0} held-out inputs per task: soft prompt, hard prompt (the tag), no prompt.`);
  log(`   ${"task".padEnd(10)} ${"soft".padStart(5)} ${"hard".padStart(5)} ${"none".padStart(5)}`);
  for (const c of r.comparison) log(`   ${c.task.padEnd(10)} ${pct(c.soft)} ${pct(c.hard)} ${pct(c.none)}`);
  log("");
  log(
    `${r.prompts.length} prompts trained in ${trainSeconds.toFixed(1)} s (${(trainSeconds / r.prompts.length).toFixed(1)} s each), ` +
      `${r.seconds.toFixed(1)} s in all, on ${cpus().length} cores at load average ${loadavg()[0].toFixed(1)}.`,
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) printDemo(await runDemo());
