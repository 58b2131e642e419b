/** `softprompt data check`: parse the flags, call the workflow, print the report (one JSON object with --json). Added to the program by main.ts. */
import type { Command } from "commander";
import { dataCheck } from "../workflows.js";
import { dataCheckView } from "../report/data-check.js";
import { TRAIN_DEFAULTS, setting } from "./options.js";
import { printView } from "./output.js";

export function addDataCommands(program: Command): void {
  const data = program.command("data").description("look at a dataset before training on it");
  data
    .command("check")
    .description("counts per answer, exact and near duplicates, conflicting answers, leakage into --valid, token lengths for --model and the rows it would cut, positive/negative balance with suggested weights")
    .argument("<file>", "a dataset (.jsonl or .csv), or a review file (softprompt annotate): the rows train --feedback makes of it")
    .option("--valid <file>", "held-out data: which of its inputs are also in <file>")
    .option("--model <model>", "a model folder or hub id: token lengths with its tokenizer")
    .option("--max-length <n>", "the training --max-length the lengths are checked against", setting("maxLength", "--max-length"), TRAIN_DEFAULTS.maxLength)
    .option("--json", "print one JSON object")
    .action(async (file: string, opts: { valid?: string; model?: string; maxLength?: number; json?: boolean }) => {
      printView(await dataCheck({ file, valid: opts.valid, model: opts.model, maxLength: opts.maxLength }), opts.json, dataCheckView);
    });
}
