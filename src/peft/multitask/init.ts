/**
 * The starting tensors of multi-task prompt tuning, with PEFT's init options: the shared prompt drawn
 * N(0, 1) (nn.Embedding's default) or from a text's embeddings, the task factors N(0, 0.02²); or from a
 * trained adapter (`initFrom`, prompt transfer): a multi-task adapter's shared prompt and its tasks'
 * average factors, one task's, or none (fresh factors). Every new task starts from the same factors.
 * Another method's prompt counts as one source task whose factors multiply to ones (cols · rows ≈ 1),
 * so each new task starts at that prompt.
 */
import { fail } from "../../util/errors.js";
import { Rng } from "../../util/rng.js";
import type { MethodContext, Params } from "../method.js";
import { initPrompt } from "../prompt-tuning/init.js";
import { loadSourceAdapter, promptFromAdapter } from "../prompt-tuning/init-from.js";
import type { MptInit, MultitaskConfig, MultitaskOptions } from "./config.js";
import { COLS, ROWS, SHARED, taskIndex } from "./model.js";

/** The init in effect: initFrom alone starts from the source's average task. */
export const effectiveInit = (o: MultitaskOptions): MptInit => (o.initFrom !== undefined && o.promptTuningInit === "random" ? "average_source_tasks" : o.promptTuningInit);

export async function initMultitask(options: MultitaskOptions, config: MultitaskConfig, ctx: MethodContext): Promise<Params> {
  const { num_tasks: T, num_virtual_tokens: n, num_ranks: r, token_dim: d } = config;
  const rng = new Rng(ctx.seed);
  const normal = (size: number, std: number) => Float32Array.from({ length: size }, () => rng.normal() * std);
  const embeddings = ctx.lm.weights.tensor(ctx.lm.embeddingName);
  let shared =
    options.promptTuningInit === "text"
      ? initPrompt({ numVirtual: n, init: "text", seed: ctx.seed, embeddings, textIds: ctx.tokenizer.encode(options.promptTuningInitText!, { addSpecialTokens: false }) })
      : normal(n * d, 1);
  let cols = normal(T * n * r, 0.02);
  let rows = normal(T * r * d, 0.02);
  const init = effectiveInit(options);
  if (options.initFrom !== undefined) {
    const source = await fromSource(options, init, { n, r, d, noise: (size) => normal(size, 0.02) }, ctx);
    shared = source.shared;
    if (source.cols !== undefined && source.rows !== undefined) {
      cols = repeat(source.cols, T);
      rows = repeat(source.rows, T);
    }
  }
  return new Map([
    [SHARED, { shape: [n, d], data: shared }],
    [COLS, { shape: [T, n, r], data: cols }],
    [ROWS, { shape: [T, r, d], data: rows }],
  ]);
}

/** The source's shared prompt, and (unless only the shared prompt is wanted) one task's factors [n, r], [r, d]. */
async function fromSource(options: MultitaskOptions, init: MptInit, { n, r, d, noise }: { n: number; r: number; d: number; noise: (size: number) => Float32Array }, ctx: MethodContext) {
  const dir = options.initFrom!;
  const source = await loadSourceAdapter(dir, ctx);
  const onlyShared = init === "only_source_shared";
  if (source.config.peft_type !== "MULTITASK_PROMPT_TUNING") {
    if (init === "exact_source_task") fail("usage", `a ${source.config.peft_type} adapter has one prompt and no tasks to pick from; use average_source_tasks or only_source_shared`, { field: "promptTuningInitTask" });
    const shared = await promptFromAdapter(dir, ctx, n);
    // One task whose factors multiply to ones: rank 0 carries them; the other ranks start small, not at zero
    // (where both factors of a rank are zero, neither gets a gradient).
    const cols = noise(n * r);
    const rows = noise(r * d);
    for (let i = 0; i < n; i++) cols[i * r] = 1;
    rows.fill(1, 0, d);
    return { shared, ...(onlyShared ? {} : { cols, rows }) };
  }
  const config = source.config as MultitaskConfig;
  if (config.num_virtual_tokens !== n) fail("usage", `the adapter at ${dir} has ${config.num_virtual_tokens} virtual tokens, the new prompt ${n}; set numVirtualTokens to ${config.num_virtual_tokens}`, { field: "numVirtualTokens" });
  const shared = source.params.get(SHARED)!.data.slice();
  if (onlyShared) return { shared };
  if (config.num_ranks !== r) fail("usage", `the adapter at ${dir} has rank ${config.num_ranks}, the new factors ${r}; set numRanks to ${config.num_ranks}`, { field: "numRanks" });
  const tasks = init === "exact_source_task" ? [taskIndex(config, options.promptTuningInitTask!, "promptTuningInitTask")] : [...Array(config.num_tasks).keys()];
  return { shared, cols: meanOf(source.params.get(COLS)!.data, n * r, tasks), rows: meanOf(source.params.get(ROWS)!.data, r * d, tasks) };
}

/** The mean of blocks `tasks` (each `size` long) of a [tasks, …] tensor. */
function meanOf(data: Float32Array, size: number, tasks: number[]): Float32Array {
  const out = new Float32Array(size);
  for (const t of tasks) for (let i = 0; i < size; i++) out[i] += data[t * size + i] / tasks.length;
  return out;
}

const repeat = (block: Float32Array, times: number) => {
  const out = new Float32Array(block.length * times);
  for (let t = 0; t < times; t++) out.set(block, t * block.length);
  return out;
};
