/**
 * `softprompt annotate`: the model's answers to a data file's inputs, written to a review file for a
 * person to mark good or bad (in the file, or one at a time with --interactive). Added by main.ts.
 */
import type { Command } from "commander";
import { annotate } from "../feedback/annotate.js";
import { formatPairs } from "../report/table.js";
import { integer } from "./options.js";
import { printView, warn } from "./output.js";

export function addFeedbackCommands(program: Command): void {
  program
    .command("annotate")
    .description("answer each input with the model into a review file (JSONL, an empty verdict per answer) to mark good or bad, then train --feedback on it; resumes a review file that exists")
    .requiredOption("--model <model>", "a model folder or a Hugging Face hub id")
    .requiredOption("--data <file>", 'inputs: {"prompt"[,"completion"]} or {"text"} rows (.jsonl or .csv)')
    .requiredOption("--output <file>", "the review file (kept verdicts are resumed; written atomically)")
    .option("--adapter <dir>", "an adapter folder to answer with (default: the bare model)")
    .option("--interactive", "then review here, one answer at a time: g good, b bad, e edit, s skip, q quit (saved after each)")
    .option("--max-new-tokens <n>", "longest answer in tokens", integer("--max-new-tokens", 1), 32)
    .option("--batch-size <n>", "inputs answered together", integer("--batch-size", 1), 8)
    .option("--json", "print one JSON object")
    .action(async (opts) => {
      const report = await annotate({
        ...opts,
        interactive: opts.interactive ? { input: process.stdin, output: process.stderr } : undefined,
        onWarning: warn,
        onLog: (line) => process.stderr.write(line + "\n"),
      });
      printView(report, opts.json, (r) =>
        formatPairs([
          ["review file", r.output],
          ["answers", `${r.items} (${r.generated} made now)`],
          ["verdicts", `${r.counts.good} good, ${r.counts.bad} bad (${r.counts.corrected} corrected), ${r.counts.pending} not reviewed`],
          ["next", r.counts.pending > 0 ? `mark the rest ("verdict": "good" or "bad"), or rerun with --interactive` : `softprompt train --feedback ${r.output} …`],
        ]),
      );
    });
}
