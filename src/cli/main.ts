/**
 * The command line: parse the arguments, call the library (src/workflows.ts), print the result.
 * With --json every command prints exactly one JSON object (errors too: {"error": {...}}).
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { SoftpromptError } from "../util/errors.js";
import * as workflows from "../workflows.js";
import { printResult, printError } from "./output.js";
import { progressReporter } from "./progress.js";

const program = new Command("softprompt")
  .description("Teach a frozen language model new tasks with soft prompts.")
  .showHelpAfterError()
  .exitOverride();

const int = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer, got "${value}"`);
  return n;
};
const num = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got "${value}"`);
  return n;
};
const list = (value: string, previous: string[] = []) => [...previous, value];

program
  .command("info")
  .description("architecture, parameter count, dtype, vocabulary, context length and files of a model")
  .argument("<model>", "a model folder or a Hugging Face hub id")
  .option("--json", "print one JSON object")
  .action(async (model: string, opts: { json?: boolean }) => {
    printResult(await workflows.info(model), opts.json, "info");
  });

program
  .command("train")
  .description("train a soft prompt on a dataset and save it as a PEFT adapter")
  .requiredOption("--model <model>", "a model folder or a Hugging Face hub id")
  .requiredOption("--data <file>", "training data (.jsonl or .csv)")
  .requiredOption("--output <dir>", "where the adapter, log and checkpoints go")
  .option("--valid <file>", "validation data (default: a held-out share of --data)")
  .option("--num-virtual-tokens <n>", "virtual tokens in the prompt", int("--num-virtual-tokens"))
  .addOption(new Option("--init <how>", "prompt initialisation").choices(["random", "vocab", "text", "labels"]))
  .option("--init-text <text>", "hard prompt to start from (with --init text)")
  .option("--label <word>", "a class label word (repeat; with --init labels)", list)
  .addOption(new Option("--optimizer <name>").choices(["adamw", "adafactor"]))
  .option("--lr <rate>", "peak learning rate", num("--lr"))
  .option("--weight-decay <w>", "decoupled weight decay", num("--weight-decay"))
  .option("--warmup-steps <n>", "linear warmup steps", int("--warmup-steps"))
  .addOption(new Option("--decay <schedule>").choices(["constant", "linear", "cosine"]))
  .option("--steps <n>", "optimiser steps (default: --epochs passes)", int("--steps"))
  .option("--epochs <n>", "passes over the data", num("--epochs"))
  .option("--batch-size <n>", "examples per batch", int("--batch-size"))
  .option("--grad-accum <n>", "batches per optimiser step", int("--grad-accum"))
  .option("--max-grad-norm <x>", "clip the gradient norm (0: off)", num("--max-grad-norm"))
  .option("--max-length <n>", "longest example in tokens; longer prompts are cut from the left", int("--max-length"))
  .option("--valid-fraction <f>", "held-out share without --valid", num("--valid-fraction"))
  .option("--eval-every <n>", "validate every n steps", int("--eval-every"))
  .option("--patience <n>", "stop after n validations without improvement (0: never)", int("--patience"))
  .option("--save-every <n>", "checkpoint every n steps", int("--save-every"))
  .option("--seed <n>", "random seed", int("--seed"))
  .option("--resume", "continue from <output>/checkpoint")
  .option("--json", "print one JSON object")
  .action(async (opts: Record<string, unknown>) => {
    const { model, data, valid, output, resume, json, label, ...rest } = opts;
    const progress = json ? undefined : progressReporter();
    const result = await workflows.train({
      ...(rest as object),
      ...(label === undefined ? {} : { labels: label as string[] }),
      model: model as string,
      data: data as string,
      valid: valid as string | undefined,
      output: output as string,
      resume: Boolean(resume),
      onStep: progress?.step,
      onLog: (line) => (json ? process.stderr.write(line + "\n") : progress?.log(line)),
    }).finally(() => progress?.stop());
    const { prompt: _prompt, ...summary } = result;
    printResult(summary, Boolean(json), "train");
  });

program
  .command("generate")
  .description("generate text, with a soft prompt or without")
  .requiredOption("--model <model>", "a model folder or a Hugging Face hub id")
  .requiredOption("--input <text>", "input text (repeat for a batch)", list)
  .option("--adapter <dir>", "a PEFT prompt-tuning adapter folder")
  .option("--max-new-tokens <n>", "tokens to generate at most", int("--max-new-tokens"), 32)
  .option("--temperature <t>", "0: greedy", num("--temperature"))
  .option("--top-k <k>", "sample from the k most likely tokens", int("--top-k"))
  .option("--top-p <p>", "sample from the smallest set with this much probability", num("--top-p"))
  .option("--repetition-penalty <x>", "HF repetition penalty (1: off)", num("--repetition-penalty"))
  .option("--stop <text>", "stop before this text (repeat)", list)
  .option("--seed <n>", "sampling seed", int("--seed"))
  .option("--json", "print one JSON object")
  .action(async (opts) => {
    const generations = await workflows.generateText({ ...opts, inputs: opts.input });
    if (opts.json) printResult(generations.length === 1 ? generations[0] : { generations }, true, "generate");
    else for (const g of generations) process.stdout.write(`${g.text ?? ""}\n`);
  });

program
  .command("eval")
  .description("loss, perplexity and accuracy on a dataset: soft prompt, hard prompt and no prompt side by side")
  .requiredOption("--model <model>", "a model folder or a Hugging Face hub id")
  .requiredOption("--data <file>", "evaluation data (.jsonl or .csv)")
  .option("--adapter <dir>", "a PEFT prompt-tuning adapter folder")
  .option("--compare-text <text>", "a hard text prompt to compare with")
  .option("--choice <text>", "classify by scoring these completions (repeat)", list)
  .option("--max-length <n>", "longest example in tokens", int("--max-length"))
  .option("--batch-size <n>", "examples per batch", int("--batch-size"))
  .option("--json", "print one JSON object")
  .action(async (opts) => {
    const report = await workflows.evaluate({ ...opts, choices: opts.choice });
    printResult(report, opts.json, "eval");
  });

program
  .command("inspect")
  .description("the vocabulary tokens nearest to each learned vector; similarity of two prompts")
  .requiredOption("--model <model>", "the adapter's base model")
  .requiredOption("--adapter <dir>", "a PEFT prompt-tuning adapter folder")
  .option("--compare <dir>", "another adapter to compare with")
  .option("--top <k>", "nearest tokens per vector", int("--top"), 5)
  .option("--json", "print one JSON object")
  .action(async (opts) => {
    printResult(await workflows.inspect(opts), opts.json, "inspect");
  });

const wantsJson = process.argv.includes("--json");
try {
  await program.parseAsync(process.argv);
} catch (err) {
  const code = (err as { code?: string }).code;
  if (code === "commander.helpDisplayed" || code === "commander.version" || code === "commander.help") process.exit(0);
  if (typeof code === "string" && code.startsWith("commander.")) process.exit(2); // commander printed the usage error
  printError(err, wantsJson);
  process.exit(err instanceof SoftpromptError && err.code === "usage" ? 2 : 1);
}
