// Commands that hand adapters to other servers: `export-embeds` writes the request vLLM's --enable-prompt-embeds takes.
import { type Command, Option } from "commander";
import { exportEmbeds } from "../export/vllm.js";
import { printJson, printView, warn } from "./output.js";
import { integer } from "./options.js";

export function addExportCommands(program: Command): void {
  program
    .command("export-embeds")
    .description("write the vLLM completions request (prompt_embeds: the soft prompt's vectors, then the input's token embeddings) for `vllm serve --enable-prompt-embeds`")
    .requiredOption("--model <model>", "the adapter's base model: a folder or a Hugging Face hub id")
    .requiredOption("--adapter <dir>", "a PEFT adapter folder that places vectors before the text (prompt tuning, P-tuning)")
    .requiredOption("--input <text>", "the input text, after the soft prompt")
    .option("--output <file>", "write the request JSON here (default: print it on stdout)")
    .option("--served-model-name <name>", "the request's model: the name vLLM serves the base under (default: --model)")
    .option("--max-tokens <n>", "max_tokens of the request", integer("--max-tokens", 1), 32)
    .addOption(new Option("--dtype <dtype>", "the tensor's dtype (vLLM casts it to the model's)").choices(["float32", "bfloat16"]).default("float32"))
    .option("--json", "print one JSON object")
    .action(async (opts) => {
      const result = await exportEmbeds(opts);
      result.warnings.forEach(warn);
      // Without --output the request itself is the result: one JSON object, ready for curl -d @-.
      if (result.output === undefined) return printJson(result.request);
      const { request: _request, ...summary } = result;
      printView(summary, opts.json, (r) => `${r.output}: prompt_embeds [${r.shape.join(", ")}] ${r.dtype} (${r.virtualTokens} virtual + ${r.inputTokens} input tokens)\n`);
    });
}
