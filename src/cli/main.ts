/**
 * The command line: parse the arguments, call the library (src/workflows.ts), print the result.
 * With --json every command prints exactly one JSON object (errors too: {"error": {...}}).
 * Exit codes: 0 done, 1 failed, 2 wrong usage (a bad, missing or out-of-range flag).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { SoftpromptError } from "../util/errors.js";
import * as workflows from "../workflows.js";
import { CURVE_FILE } from "../report/loss-curve.js";
import { TASK_EVAL_DEFAULTS } from "../eval/task.js";
import { compareView, evalView, inspectView, showView, trainView } from "../report/views.js";
import { compareMethods } from "../compare.js";
import { printError, printJson, printResult, printUsageError, printView } from "./output.js";
import { progressReporter } from "./progress.js";
import { integer, list, number, schemaNumber, setting, TRAIN_DEFAULTS, withFlagNames } from "./options.js";
import { OBJECTIVE_FLAGS } from "../objective/combine.js";
import { classifyView } from "../report/classify.js";
import { methodOptions, typedMethodSettings } from "./method-flags.js";
import { methodByName, registeredMethods } from "../peft/index.js";
import { DEFAULT_METHOD } from "../train/config.js";
import { checkAnswersAmongChoices, warnUnknownTokens } from "./input-checks.js";
import { addServeCommands } from "./serve-commands.js";
import { QUANTIZE_HELP, QUANTIZE_MODES } from "../quantize/index.js";
import { addExportCommands } from "./export-commands.js";
import { addDistillCommands } from "./distill-commands.js";
import { addDataCommands } from "./data-commands.js";
import { addFeedbackCommands } from "./feedback-commands.js";
import { addComparePromptsCommands } from "./compare-prompts-commands.js";

// package.json sits two folders up from both src/cli/main.ts and dist/cli/main.js.
const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
const wantsJson = process.argv.includes("--json");
/** The subcommand being run, so a library error's field can be named by that command's flag. */
let running: Command | undefined;

const program = new Command("softprompt")
  .description("Teach a frozen language model new tasks with soft prompts.")
  .version(version, "-V, --version", "print the version")
  .showHelpAfterError()
  .exitOverride()
  // With --json, commander's own error text (and the help after it) would break the one-object rule; we print JSON instead.
  .configureOutput({ writeErr: (text) => (wantsJson ? undefined : process.stderr.write(text)) })
  .hook("preAction", (_program, command) => {
    running = command;
  });

const d = TRAIN_DEFAULTS;

/** --quantize on a command that trains: refused by name (not as an unknown option), with the reason. */
const refuseQuantize = (): never => {
  throw new InvalidArgumentError("quantised weights are for inference only (generate, eval, serve): training needs the float32 model");
};

program
  .command("info")
  .description("architecture, parameter count, dtype, vocabulary, context length and files of a model")
  .argument("<model>", "a model folder or a Hugging Face hub id")
  .option("--json", "print one JSON object")
  .action(async (model: string, opts: { json?: boolean }) => {
    printResult(await workflows.info(model), opts.json, "info");
  });

const trainCommand = program
  .command("train")
  .description("train an adapter (a soft prompt, prefix, P-tuning encoder, multi-task prompt or LoRA) on a dataset and save it as a PEFT adapter (the best validation step's), a log and curve.svg")
  .requiredOption("--model <model>", "a model folder or a Hugging Face hub id")
  .requiredOption("--data <file>", "training data (.jsonl or .csv)")
  .requiredOption("--output <dir>", "where the adapter, log, curve and checkpoints go")
  .addOption(new Option("--method <name>", "the method").choices(registeredMethods()).default(DEFAULT_METHOD))
  .option("--valid <file>", "validation data (default: a held-out share of --data)")
  .addOption(new Option("--quantize <mode>").hideHelp().argParser(refuseQuantize))
  .option("--feedback <file>", "a review file (softprompt annotate): good answers and corrections are trained on besides --data")
  .addOption(new Option("--optimizer <name>", "optimiser").choices(["adamw", "adafactor"]).default(d.optimizer))
  .option("--lr <rate>", `peak learning rate (default: ${methodLrDefaults()})`, setting("lr", "--lr"))
  .option("--weight-decay <w>", "decoupled weight decay", setting("weightDecay", "--weight-decay"), d.weightDecay)
  .option("--warmup-steps <n>", "linear warmup steps", setting("warmupSteps", "--warmup-steps"), d.warmupSteps)
  .addOption(new Option("--decay <schedule>", "learning-rate decay after warmup").choices(["constant", "linear", "cosine"]).default(d.decay))
  .option("--steps <n>", "optimiser steps (default: --epochs passes over the data)", setting("steps", "--steps"))
  .option("--epochs <n>", "passes over the data (without --steps)", setting("epochs", "--epochs"), d.epochs)
  .option("--batch-size <n>", "examples per batch", setting("batchSize", "--batch-size"), d.batchSize)
  .option("--grad-accum <n>", "batches per optimiser step", setting("gradAccum", "--grad-accum"), d.gradAccum)
  .option("--max-grad-norm <x>", "clip the gradient norm (0: off)", setting("maxGradNorm", "--max-grad-norm"), d.maxGradNorm)
  .option("--max-length <n>", "longest example in tokens; longer prompts are cut from the left", setting("maxLength", "--max-length"), d.maxLength)
  .option("--valid-fraction <f>", "held-out share without --valid", setting("validFraction", "--valid-fraction"), d.validFraction)
  .option("--eval-every <n>", "validate every n steps", setting("evalEvery", "--eval-every"), d.evalEvery)
  .option("--patience <n>", "stop after n validations without improvement (0: never)", setting("patience", "--patience"), d.patience)
  .option("--save-every <n>", "checkpoint every n steps", setting("saveEvery", "--save-every"), d.saveEvery)
  .option("--seed <n>", "random seed", setting("seed", "--seed"), d.seed)
  .option("--resume", "continue from <output>/checkpoint (a finished run continues to a larger --steps)")
  .option("--overwrite", "start over in an output folder that holds a run")
  .option("--json", "print one JSON object");
for (const option of methodOptions()) trainCommand.addOption(option);
for (const { flag, description, schema } of OBJECTIVE_FLAGS) trainCommand.option(`${flag} <x>`, description, schemaNumber(schema, flag));
trainCommand.option("--verbalizer <file>", 'a JSON file mapping each label to its words: rows {"prompt" or "text", "label"} train by cross-entropy over the words; --init labels without --label starts from them');
trainCommand.action(async (opts: Record<string, unknown>) => {
  const { model, data, valid, output, resume, overwrite, json, method } = opts;
  // An implication meant for another method (--init-text implies prompt tuning's --init text) is dropped where the chosen method lacks the option.
  const chosen = methodByName(String(method ?? DEFAULT_METHOD), "--method");
  const methodSettings = typedMethodSettings(opts, (attribute, key) => trainCommand.getOptionValueSource(attribute) !== "implied" || key in chosen.options.shape);
  // Only what the user typed: the method's own trainer defaults (e.g. a learning rate) fill the rest.
  const typed = (k: string) => opts[k] !== undefined && trainCommand.getOptionValueSource(k) !== "default";
  const trainerSettings = Object.fromEntries(Object.keys(TRAIN_DEFAULTS).concat("steps").filter(typed).map((k) => [k, opts[k]]));
  const initText = methodSettings.initText as string | undefined;
  const labels = (methodSettings.labels as string[] | undefined) ?? [];
  await warnUnknownTokens(model as string, [["--init-text", initText], ...labels.map((l): [string, string] => ["--label", l])]);
  const progress = json ? undefined : progressReporter();
  // Ctrl-C (or SIGTERM) stops after the current step with a checkpoint; a second one stops at once.
  const interrupt = new AbortController();
  const onSignal = () => {
    if (interrupt.signal.aborted) process.exit(130);
    interrupt.abort();
    progress?.log("stopping after this step and writing a checkpoint (press Ctrl-C again to quit at once)");
  };
  process.on("SIGINT", onSignal).on("SIGTERM", onSignal);
  const objectiveWeights = Object.fromEntries(OBJECTIVE_FLAGS.filter(({ key }) => opts[key] !== undefined).map(({ key }) => [key, opts[key]]));
  const result = await workflows.train({
    ...trainerSettings,
    ...methodSettings,
    ...objectiveWeights,
    verbalizer: opts.verbalizer as string | undefined,
    // --template without --method trains the template method.
    method: (trainCommand.getOptionValueSource("method") === "default" && methodSettings.template !== undefined ? "template" : method) as string,
    model: model as string,
    data: data as string,
    valid: valid as string | undefined,
    feedback: opts.feedback as string | undefined,
    output: output as string,
    resume: Boolean(resume),
    overwrite: Boolean(overwrite),
    signal: interrupt.signal,
    onStep: progress?.step,
    onLog: (line) => (json ? process.stderr.write(line + "\n") : progress?.log(line)),
  }).finally(() => {
    progress?.stop(); // shows the cursor again
    process.off("SIGINT", onSignal).off("SIGTERM", onSignal);
  });
  const { params: _params, ...summary } = result;
  if (summary.interrupted) {
    const resume = resumeCommand(process.argv.slice(2));
    printView({ ...summary, resume }, Boolean(json), (r) => `interrupted at step ${r.steps}; the checkpoint is in ${join(r.output, "checkpoint")}\nresume with: ${r.resume}\n`);
    process.exit(130);
  }
  const curve = join(summary.output, CURVE_FILE);
  const report = { ...summary, ...(existsSync(curve) ? { curve } : {}) };
  printView(report, Boolean(json), (r) => trainView(r, r.curve));
  });

program
  .command("compare")
  .description("train and evaluate several methods on the same model and data: a table and compare.svg")
  .requiredOption("--model <model>", "a model folder or a Hugging Face hub id")
  .requiredOption("--data <file>", "training data (.jsonl or .csv)")
  .requiredOption("--valid <file>", "held-out data: validation during training, and what the methods are compared on")
  .requiredOption("--output <dir>", "each method's run goes to <output>/<method>, the chart to <output>/compare.svg")
  .requiredOption("--methods <list>", `comma-separated methods (registered: ${registeredMethods().join(", ")})`, (v: string) => v.split(",").map((m) => m.trim()).filter(Boolean))
  .option("--steps <n>", "optimiser steps for every method", setting("steps", "--steps"))
  .option("--lr <rate>", "peak learning rate for every method (default: each method's own)", setting("lr", "--lr"))
  .option("--lr-for <method=rate>", "a learning rate for one method (repeat)", list)
  .option("--batch-size <n>", "examples per batch", setting("batchSize", "--batch-size"))
  .option("--max-length <n>", "longest example in tokens", setting("maxLength", "--max-length"))
  .option("--seed <n>", "random seed", setting("seed", "--seed"))
  .option("--choice <text>", "classify by scoring these completions (repeat)", list)
  .option("--json", "print one JSON object")
  .action(async (opts) => {
    const settings = Object.fromEntries(["steps", "lr", "batchSize", "maxLength", "seed"].filter((k) => opts[k] !== undefined).map((k) => [k, opts[k]]));
    const perMethod: Record<string, Record<string, unknown>> = {};
    for (const pair of (opts.lrFor as string[] | undefined) ?? []) {
      const [method, rate] = pair.split("=");
      perMethod[method] = { lr: setting("lr", "--lr-for")(rate ?? "") };
    }
    const report = await compareMethods({
      model: opts.model, data: opts.data, valid: opts.valid, output: opts.output, methods: opts.methods, settings, perMethod, choices: opts.choice,
      onLog: (line) => process.stderr.write(line + "\n"),
    });
    printView(report, opts.json, compareView);
  });

program
  .command("generate")
  .description("generate text, with a soft prompt or without")
  .requiredOption("--model <model>", "a model folder or a Hugging Face hub id")
  .requiredOption("--input <text>", "input text (repeat for a batch)", list)
  .option("--adapter <dir>", "a PEFT prompt-tuning adapter folder")
  .option("--task <name>", "for a multi-task adapter: the task whose prompt to use")
  .option("--template <file>", "render each row through this template (an adapter trained with one brings its own)")
  .option("--code <NAME=value>", "a learned control code's value (repeat)", list)
  .option("--max-new-tokens <n>", "tokens to generate at most", integer("--max-new-tokens", 1), 32)
  .option("--temperature <t>", "0: greedy", number("--temperature"), 0)
  .option("--top-k <k>", "sample from the k most likely tokens (0: all)", integer("--top-k", 0), 0)
  .option("--top-p <p>", "sample from the smallest set with this much probability", number("--top-p"), 1)
  .option("--repetition-penalty <x>", "HF repetition penalty (1: off)", number("--repetition-penalty"), 1)
  .option("--stop <text>", "stop before this text (repeat)", list)
  .option("--seed <n>", "sampling seed", integer("--seed"), 0)
  .addOption(new Option("--quantize <mode>", QUANTIZE_HELP).choices(QUANTIZE_MODES))
  .option("--json", "print one JSON object")
  .action(async (opts) => {
    await warnUnknownTokens(opts.model, (opts.input as string[]).map((text): [string, string] => ["--input", text]));
    const generations = await workflows.generateText({ ...opts, inputs: opts.input, codes: opts.code });
    if (opts.json) printJson(generations.length === 1 ? generations[0] : { generations });
    else for (const g of generations) process.stdout.write(`${g.text ?? ""}\n`);
  });

program
  .command("eval")
  .description("loss, perplexity and accuracy on a dataset: soft prompt, hard prompt and no prompt side by side")
  .requiredOption("--model <model>", "a model folder or a Hugging Face hub id")
  .requiredOption("--data <file>", "evaluation data (.jsonl or .csv)")
  .option("--adapter <dir>", "a PEFT prompt-tuning adapter folder")
  .option("--task <name>", "for a multi-task adapter: the task whose prompt to use")
  .option("--template <file>", "render each row through this template (an adapter trained with one brings its own)")
  .option("--code <NAME=value>", "a learned control code's value (repeat)", list)
  .option("--compare-text <text>", "a hard text prompt to compare with")
  .option("--choice <text>", "classify by scoring these completions (repeat); every answer in --data must be one of them", list)
  .option("--max-length <n>", "longest example in tokens", setting("maxLength", "--max-length"), TASK_EVAL_DEFAULTS.maxLength)
  .option("--batch-size <n>", "examples per batch", setting("batchSize", "--batch-size"), TASK_EVAL_DEFAULTS.batchSize)
  .addOption(new Option("--quantize <mode>", QUANTIZE_HELP).choices(QUANTIZE_MODES))
  .option("--json", "print one JSON object")
  .action(async (opts) => {
    if (opts.choice !== undefined) await checkAnswersAmongChoices(opts.data, opts.choice);
    await warnUnknownTokens(opts.model, [["--compare-text", opts.compareText]]);
    const { baselines, ...report } = await workflows.evaluate({ ...opts, choices: opts.choice, codes: opts.code });
    // Without an adapter or --compare-text there is nothing to compare: no empty section.
    const shown = Object.keys(baselines).length > 0 ? { ...report, baselines } : report;
    printView(shown, opts.json, () => evalView({ ...report, baselines }, { choices: opts.choice !== undefined }));
  });

program
  .command("classify")
  .description("classify rows {\"prompt\" or \"text\", \"label\"} by the likelihood of each label's words (mean log-probability per token, a label's best word): accuracy per label and confusion counts, with or without contextual calibration")
  .requiredOption("--model <model>", "a model folder or a Hugging Face hub id")
  .requiredOption("--data <file>", "labelled rows (.jsonl or .csv)")
  .requiredOption("--verbalizer <file>", 'a JSON file mapping each label to its words, e.g. {"positive": ["good", "great"]}')
  .option("--adapter <dir>", "a trained adapter whose prompt comes before each row (default: none)")
  .option("--task <name>", "for a multi-task adapter: the task whose prompt to use")
  .option("--calibrate", "also report accuracy after contextual calibration against content-free inputs (Zhao et al. 2021)")
  .option("--json", "print one JSON object")
  .action(async (opts) => {
    printView(await workflows.classifyData(opts), opts.json, classifyView);
  });

program
  .command("inspect")
  .description("the vocabulary tokens nearest to each learned vector (for a prompt started from --init-text: how far each moved from its starting token); similarity of two prompts")
  .requiredOption("--model <model>", "the adapter's base model")
  .requiredOption("--adapter <dir>", "a PEFT prompt-tuning adapter folder")
  .option("--compare <dir>", "another adapter to compare with")
  .option("--top <k>", "nearest tokens per vector", integer("--top", 1), 5)
  .option("--json", "print one JSON object")
  .action(async (opts) => {
    printView(await workflows.inspect(opts), opts.json, inspectView);
  });

program
  .command("show")
  .description("what an adapter is: method, base model, virtual tokens, steps, best step and its validation loss, data fingerprint, creation time")
  .argument("<adapter>", "an adapter folder (a training run's --output, or a PEFT adapter)")
  .option("--json", "print one JSON object")
  .action(async (adapter: string, opts: { json?: boolean }) => {
    printView(await workflows.show(adapter), opts.json, showView);
  });

addExportCommands(program);
addDistillCommands(program);
addDataCommands(program);
addFeedbackCommands(program);
addComparePromptsCommands(program);

addServeCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help") process.exit(0);
    printUsageError(err, wantsJson);
    process.exit(2);
  }
  const { error, flag } = withFlagNames(err, running);
  printError(error, wantsJson, flag);
  process.exit(error instanceof SoftpromptError && error.code === "usage" ? 2 : 1);
}

/** The command that continues an interrupted run: the same arguments with --resume (and without --overwrite). */
function resumeCommand(args: string[]): string {
  const kept = args.filter((a) => a !== "--overwrite" && a !== "--resume");
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ["softprompt", ...kept, "--resume"].map(quote).join(" ");
}

/** The learning rate each method trains with when --lr is not given (its own default, else the trainer's). */
function methodLrDefaults(): string {
  return registeredMethods().map((m) => `${m} ${methodByName(m).trainerDefaults?.lr ?? TRAIN_DEFAULTS.lr}`).join(", ");
}
