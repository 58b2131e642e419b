/**
 * Multi-task prompt tuning (Wang et al. 2023, "Multitask Prompt Tuning Enables Parameter-Efficient
 * Transfer Learning"), as PEFT 0.21 computes it (peft/tuners/multitask_prompt_tuning/model.py): task t's
 * prompt is the shared prompt P [n, d] times, elementwise, the low-rank product cols[t] · rows[t]
 * ([n, r] · [r, d]). Each row of a batch uses its own task's prompt. Tensor names are PEFT's.
 */
import type { Value } from "../../graph/ir.js";
import * as o from "../../graph/ops.js";
import { fail } from "../../util/errors.js";
import type { Batch } from "../../data/index.js";
import type { Adaptation, Params } from "../method.js";
import type { MultitaskConfig } from "./config.js";

export const SHARED = "prompt_embeddings";
export const COLS = "prefix_task_cols";
export const ROWS = "prefix_task_rows";

/** The adapter's task names in index order; PEFT-written adapters have none, and their tasks are "0", "1", …. */
export function taskNames(config: MultitaskConfig): string[] {
  return config.task_names ?? Array.from({ length: config.num_tasks }, (_, i) => String(i));
}

export function taskIndex(config: MultitaskConfig, task: string, field = "task"): number {
  const names = taskNames(config);
  const index = names.indexOf(task);
  if (index < 0) fail("usage", `task "${task}" is not one of this adapter's tasks: ${names.join(", ")}`, { field });
  return index;
}

/** [B, n, d]: every task's prompt, then each row's. */
export function multitaskAdaptation(config: MultitaskConfig, params: ReadonlyMap<string, Value>): Adaptation {
  const prompts = o.mul(o.matmul(params.get(COLS)!, params.get(ROWS)!), params.get(SHARED)!); // [T, n, d]
  const taskOfRow = o.input("task_index", "int64", ["batch"]);
  return {
    virtualEmbeds: o.gather(prompts, taskOfRow, 0),
    feeds: (batch) => ({ task_index: { data: BigInt64Array.from(rowTasks(config, batch), BigInt), dims: [batch.batchSize] } }),
  };
}

function rowTasks(config: MultitaskConfig, batch: Batch<ArrayLike<number>>): number[] {
  const missing = (): never => fail("data", `multi-task prompt tuning needs each row's task (one of ${taskNames(config).join(", ")}); a row names none`, { field: "task" });
  const tasks = batch.tasks ?? missing();
  return tasks.map((task) => (task === undefined ? missing() : taskIndex(config, task)));
}

/** Task t's prompt [n, d] on the host: P ⊙ (cols[t] · rows[t]). */
export function taskPrompt(config: MultitaskConfig, params: Params, t: number): Float32Array {
  const { num_virtual_tokens: n, token_dim: d, num_ranks: r } = config;
  const shared = params.get(SHARED)!.data;
  const cols = params.get(COLS)!.data.subarray(t * n * r, (t + 1) * n * r);
  const rows = params.get(ROWS)!.data.subarray(t * r * d, (t + 1) * r * d);
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      let factor = 0;
      for (let k = 0; k < r; k++) factor += cols[i * r + k] * rows[k * d + j];
      out[i * d + j] = shared[i * d + j] * factor;
    }
  }
  return out;
}
