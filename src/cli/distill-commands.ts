// `softprompt distill`: parse the flags, call src/distill, print the report (one JSON object with --json).
import { type Command, InvalidArgumentError, Option } from "commander";
import { DISTILL_DEFAULTS, DISTILL_INITS, INTO, distill, distillView } from "../distill/index.js";
import { printView } from "./output.js";
import { integer, number } from "./options.js";
import { progressReporter } from "./progress.js";

const d = DISTILL_DEFAULTS;

/** "1,2,4,8" → [1, 2, 4, 8], each a whole number ≥ 1. */
function sizes(value: string): number[] {
  const parts = value.split(",").map((p) => p.trim());
  const ks = parts.map(Number);
  const bad = parts.find((p, i) => p === "" || !Number.isInteger(ks[i]) || ks[i] < 1);
  if (bad !== undefined) throw new InvalidArgumentError(`--sweep takes whole numbers ≥ 1 separated by commas, got "${value}"`);
  return ks;
}

export function addDistillCommands(program: Command): void {
  program
    .command("distill")
    .description("compress a long hard prompt into a few soft vectors: train them to match the model with the prompt, and report what they keep and save")
    .requiredOption("--model <model>", "a model folder or a Hugging Face hub id")
    .option("--teacher-prompt <file>", "a file holding the hard prompt to distil (placed before each input)")
    .option("--teacher-text <text>", "the hard prompt as text (instead of --teacher-prompt)")
    .requiredOption("--data <file>", 'inputs (.jsonl or .csv): {"prompt","completion"} (the completion is the answer, for accuracy) or {"text"}')
    .option("--valid <file>", "held-out inputs to measure agreement on (default: --valid-fraction of --data)")
    .requiredOption("--output <dir>", "the adapter (or <output>/k<K> per size with --sweep, <output>/<form>-k<K> with --into both), the teacher cache in <output>/teacher, distill.svg")
    .option("--num-virtual-tokens <k>", "soft vectors (or prefix tokens) of the student", integer("--num-virtual-tokens", 1), d.numVirtualTokens)
    .option("--sweep <list>", "train one student per size, e.g. 1,2,4,8,16, and plot agreement against it", sizes)
    .addOption(new Option("--into <form>", "prompt: vectors before the input; prefix: keys/values per layer (a Cartridge); both: per K, a prefix and the prompt of its bytes, compared").choices(INTO).default(d.into))
    .addOption(new Option("--init <from>", "text: the hard prompt's first K tokens (a prefix: their keys/values); pooled: the means of K segments of it (a prompt); vocab: sampled vocabulary").choices(DISTILL_INITS).default(d.init))
    .option("--samples <n>", "teacher continuations per input: 0 one greedy, N sampled (temperature 1, seeded)", integer("--samples", 0), d.samples)
    .option("--max-new-tokens <n>", "longest teacher continuation", integer("--max-new-tokens", 1), d.maxNewTokens)
    .option("--teacher-top-k <k>", "teacher tokens kept per position (the whole distribution when the vocabulary has no more)", integer("--teacher-top-k", 1), d.teacherTopK)
    .option("--lm-weight <w>", 'weight of the LM loss on the data\'s completions beside the KL (needs {"prompt","completion"} lines; 0: the KL alone)', number("--lm-weight"), d.lmWeight)
    .option("--hidden-weight <w>", "weight of the mean squared difference of the final hidden states at each teacher position, beside the KL (the teacher cache then keeps them; 0: the KL alone)", number("--hidden-weight"), d.hiddenWeight)
    .option("--valid-fraction <f>", "held-out share of --data without --valid", number("--valid-fraction"), d.validFraction)
    .option("--steps <n>", "optimiser steps per student", integer("--steps", 1), d.steps)
    .option("--lr <rate>", "peak learning rate (default: 0.1 for a prompt, the trainer's for a prefix)", number("--lr"))
    .option("--batch-size <n>", "continuations per batch", integer("--batch-size", 1), d.batchSize)
    .option("--seed <n>", "random seed (data order, sampling, held-out split)", integer("--seed"), d.seed)
    .option("--resume", "continue the students from their checkpoints (teacher outputs come from the cache)")
    .option("--overwrite", "start over in an output folder that holds a run, recomputing the teacher's outputs")
    .option("--json", "print one JSON object")
    .action(async (opts) => {
      const progress = opts.json ? undefined : progressReporter();
      const interrupt = new AbortController();
      const onSignal = () => (interrupt.signal.aborted ? process.exit(130) : interrupt.abort());
      process.on("SIGINT", onSignal).on("SIGTERM", onSignal);
      const { json: _json, ...options } = opts;
      const report = await distill({
        ...options,
        resume: Boolean(opts.resume),
        overwrite: Boolean(opts.overwrite),
        signal: interrupt.signal,
        onStep: progress?.step,
        onLog: (line) => (progress ? progress.log(line) : process.stderr.write(line + "\n")),
      }).finally(() => {
        progress?.stop();
        process.off("SIGINT", onSignal).off("SIGTERM", onSignal);
      });
      printView(report, opts.json, distillView);
      if (report.interrupted) process.exit(130);
    });
}
