/** `softprompt compare-prompts`: parse the flags, call the workflow, print the table (one JSON object with --json). Added by main.ts. */
import type { Command } from "commander";
import { comparePrompts, SOFT_DEFAULTS } from "../compare-prompts.js";
import { comparePromptsView } from "../report/compare-prompts.js";
import { integer, number, setting } from "./options.js";
import { printView } from "./output.js";
import { warnUnknownTokens } from "./input-checks.js";

export function addComparePromptsCommands(program: Command): void {
  program
    .command("compare-prompts")
    .description("no prompt, a hard instruction, k shots and a soft prompt on the same held-out data: exact match and loss with 95% bootstrap intervals, tokens and measured prefill per request; a table, --json and an HTML report")
    .requiredOption("--model <model>", "a model folder or a Hugging Face hub id")
    .requiredOption("--data <file>", "training data: the shots are drawn from it and the soft prompt trained on it")
    .requiredOption("--valid <file>", "held-out data every way is measured on")
    .requiredOption("--output <dir>", "report.html, compare-prompts.json and the soft prompt (soft/)")
    .option("--instruction <text>", "the hard prompt before each input (and each shot)")
    .option("--shots <k>", "training rows shown before each input (0: leave k-shot out)", integer("--shots", 0), 3)
    .option("--adapter <dir>", "a trained soft prompt to compare instead of training one")
    .option("--template <file>", "a template mixing written text and soft spans (README: Templates), trained on --data like the soft prompt")
    .option("--steps <n>", "the soft prompt's training steps", setting("steps", "--steps"), SOFT_DEFAULTS.steps)
    .option("--num-virtual-tokens <n>", "the soft prompt's vectors", integer("--num-virtual-tokens", 1), SOFT_DEFAULTS.numVirtualTokens)
    .option("--lr <rate>", "the soft prompt's learning rate", number("--lr"), SOFT_DEFAULTS.lr)
    .option("--resamples <n>", "bootstrap resamples", integer("--resamples", 1000), 1000)
    .option("--seed <n>", "seed for the shots, the soft prompt and the resamples", integer("--seed", 0), 0)
    .option("--json", "print one JSON object")
    .action(async (opts) => {
      await warnUnknownTokens(opts.model, [["--instruction", opts.instruction]]);
      const report = await comparePrompts({
        model: opts.model, data: opts.data, valid: opts.valid, output: opts.output, instruction: opts.instruction, shots: opts.shots, adapter: opts.adapter, template: opts.template,
        soft: { steps: opts.steps, numVirtualTokens: opts.numVirtualTokens, lr: opts.lr }, resamples: opts.resamples, seed: opts.seed,
        onLog: (line) => process.stderr.write(line + "\n"),
      });
      printView(report, opts.json, comparePromptsView);
    });
}
