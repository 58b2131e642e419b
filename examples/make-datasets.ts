/**
 * The soft-prompt datasets of the offline demo: for each task of examples/tasks.ts, untagged
 * prompt/completion pairs, so only a trained prompt can tell the frozen model which skill is wanted.
 *
 *     npx tsx examples/make-datasets.ts [--seed 2024] [--train 400] [--valid 100] [--out examples/data]
 *
 * Writes <task>.train.jsonl and <task>.valid.jsonl, one {"prompt": "3 1 4 = ", "completion": "4 1 3"}
 * per line. Train inputs come from the pretraining side of the split; validation inputs are held out
 * of pretraining altogether (and so never appear in train).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { Rng } from "../src/util/rng.js";
import { type Example, TASKS, makeExample, sampleInputs } from "./tasks.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
export const DATA_DIR = resolve(HERE, "data");

const jsonl = (examples: readonly Example[]) =>
  examples.map((e) => JSON.stringify({ prompt: e.prompt, completion: e.completion })).join("\n") + "\n";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seed: { type: "string", default: "2024" },
      train: { type: "string", default: "400" },
      valid: { type: "string", default: "100" },
      out: { type: "string", default: DATA_DIR },
    },
  });
  const outDir = resolve(values.out!);
  await mkdir(outDir, { recursive: true });
  for (const [k, task] of TASKS.entries()) {
    const rng = new Rng(Number(values.seed) + k);
    const train = sampleInputs(rng, "train", Number(values.train)).map((xs) => makeExample(task, xs, false));
    const valid = sampleInputs(rng, "heldout", Number(values.valid)).map((xs) => makeExample(task, xs, false));
    await writeFile(join(outDir, `${task}.train.jsonl`), jsonl(train));
    await writeFile(join(outDir, `${task}.valid.jsonl`), jsonl(valid));
    console.log(`${task}: ${train.length} train, ${valid.length} valid   e.g. ${JSON.stringify(train[0])}`);
  }
  console.log(`wrote ${outDir}`);
}

await main();
