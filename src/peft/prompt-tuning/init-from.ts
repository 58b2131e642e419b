/**
 * Prompt transfer (SPoT, Vu et al. 2022, "SPoT: Better Frozen Model Adaptation through Soft Prompt
 * Transfer"): a new task's prompt starts from a prompt trained on another task, for the same model.
 * Any adapter whose inference form is plain embeddings can be the source (prompt tuning, P-tuning, a
 * task of multi-task prompt tuning).
 */
import { fail } from "../../util/errors.js";
import { type Adapter, checkAdapterFits, loadAdapter } from "../adapter.js";
import type { MethodContext } from "../method.js";

/** A trained adapter folder, checked to belong to the context's model: same width, and (when recorded) the same weights. */
export async function loadSourceAdapter(dir: string, { lm, baseModelName }: MethodContext, field = "initFrom"): Promise<Adapter> {
  const adapter = await loadAdapter(dir);
  const width = adapter.config.token_dim;
  if (width !== undefined && width !== lm.config.hiddenSize) {
    fail("adapter", `the adapter's token_dim is ${width}, the model's hidden size ${lm.config.hiddenSize}: a prompt moves only between tasks of one model`, { file: dir, field });
  }
  const { hiddenSize, numLayers, numHeads } = lm.config;
  checkAdapterFits(adapter, { name: baseModelName, hiddenSize, numLayers, numHeads, embeddings: lm.weights.tensor(lm.embeddingName).data }, dir);
  return adapter;
}

/** The [n, d] prompt of a trained adapter, which must have `numVirtual` virtual tokens; `task` picks a multi-task adapter's prompt. */
export async function promptFromAdapter(dir: string, ctx: MethodContext, numVirtual: number, task?: string): Promise<Float32Array> {
  const adapter = await loadSourceAdapter(dir, ctx);
  const form = adapter.method.inferenceForm(adapter.config, adapter.params, task);
  if (form.kind !== "embeddings") fail("adapter", `a ${adapter.config.peft_type} adapter holds no prompt to start from`, { file: dir, field: "initFrom" });
  const n = form.embeddings.length / ctx.lm.config.hiddenSize;
  if (n !== numVirtual) {
    fail("usage", `the adapter at ${dir} has ${n} virtual tokens, the new prompt ${numVirtual}; set numVirtualTokens to ${n}`, { field: "numVirtualTokens" });
  }
  return form.embeddings.slice();
}
