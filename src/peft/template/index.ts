/**
 * Templates as a registered method: one trainable table "table" [rows, d] holds every soft span and every
 * code value's span (see src/template/layout.ts); a rendered row says per position which table row
 * replaces its token's embedding. Saved as PEFT's `prompt_embeddings` [rows, d].
 */
import { readFileSync } from "node:fs";
import * as o from "../../graph/ops.js";
import { fail } from "../../util/errors.js";
import { registerMethod, type MethodContext, type PeftMethod, type Param } from "../method.js";
import type { Batch } from "../../data/index.js";
import type { DataTokenizer } from "../../data/tokenize.js";
import { initPrompt } from "../prompt-tuning/init.js";
import { parseTemplate, type Template } from "../../template/parse.js";
import { tableLayout, type TableLayout } from "../../template/layout.js";
import { TEMPLATE_PEFT_TYPE, type TemplateConfig, type TemplateOptions, templateConfigSchema, templateOptionsSchema } from "./config.js";

export const TABLE = "table";
const PEFT_TABLE = "prompt_embeddings";

export const templateMethod: PeftMethod<TemplateOptions, TemplateConfig> = {
  name: "template",
  peftType: TEMPLATE_PEFT_TYPE,
  options: templateOptionsSchema,
  config: templateConfigSchema,
  trainerDefaults: { lr: 0.1 },

  makeConfig(options, { lm, tokenizer, baseModelName }) {
    const { template, layout } = layoutOf(readTemplate(options.template), options.codeValues, tokenizer);
    const common = {
      task_type: "CAUSAL_LM" as const,
      num_virtual_tokens: layout.rows,
      token_dim: lm.config.hiddenSize,
      num_attention_heads: lm.config.numHeads,
      num_layers: lm.config.numLayers,
      base_model_name_or_path: baseModelName,
      inference_mode: true,
      template: template.source,
      code_values: Object.fromEntries([...layout.codeValues].map(([k, v]) => [k, [...v]])),
    };
    if (!isPromptTuning(template)) return { peft_type: TEMPLATE_PEFT_TYPE, ...common };
    // PEFT's PromptTuningConfig fields as prompt tuning writes them; its vectors are loaded over a RANDOM start.
    return { peft_type: "PROMPT_TUNING", ...common, auto_mapping: null, modules_to_save: null, num_transformer_submodules: 1, prompt_tuning_init: "RANDOM", prompt_tuning_init_text: null, revision: null, tokenizer_kwargs: null, tokenizer_name_or_path: null };
  },

  initParams(options, ctx) {
    const { layout } = layoutOf(readTemplate(options.template), options.codeValues, ctx.tokenizer);
    return new Map([[TABLE, initTable(layout, ctx)]]);
  },

  adapt(config, params) {
    const table = params.get(TABLE)!; // [rows, d]
    const index = o.input("soft_index", "int64", ["batch", "seq"]); // table row per position (0 where a token)
    const isSoft = o.input("soft_mask", "bool", ["batch", "seq", 1]);
    return {
      spliceEmbeds: (tokens) => o.where(isSoft, o.gather(table, index, 0), tokens), // [B, T, d]
      feeds: (batch) => softFeeds(batch, config.num_virtual_tokens),
    };
  },

  toPeftTensors: (_config, params) => new Map([[PEFT_TABLE, params.get(TABLE)!]]),

  async fromPeftTensors(config, read, where) {
    const table: Param = await read(PEFT_TABLE);
    const want = [config.num_virtual_tokens, config.token_dim];
    if (table.shape.length !== 2 || table.shape[0] !== want[0] || table.shape[1] !== want[1]) {
      fail("adapter", `shape [${table.shape.join(", ")}] does not match the config's [${want.join(", ")}]`, { file: where, tensor: PEFT_TABLE });
    }
    return new Map([[TABLE, table]]);
  },

  inferenceForm: () => fail("usage", "a template adapter places its vectors among the tokens, not before them: evaluate or generate with it through its template (eval and generate read it from the folder)", { field: "adapter" }),
};

registerMethod(templateMethod);

/** The template a training run names, read and parsed (errors name the file, line and column); as Jinja, the file's one final newline is not part of it. */
export function readTemplate(file: string): Template {
  let source: string;
  try {
    source = readFileSync(file, "utf8").replace(/\r?\n$/, "");
  } catch (err) {
    return fail("file", `cannot read the template: ${(err as Error).message}`, { file, field: "--template" }, err);
  }
  return parseTemplate(source, file);
}

/** A template's layout with code values given as `NAME=value` strings. */
export function layoutOf(template: Template, codeValues: readonly string[] | undefined, tokenizer: Pick<DataTokenizer, "encode">): { template: Template; layout: TableLayout } {
  const values = new Map<string, string[]>();
  for (const pair of codeValues ?? []) {
    const at = pair.indexOf("=");
    const [name, value] = [pair.slice(0, at), pair.slice(at + 1)];
    values.set(name, [...(values.get(name) ?? []), value]);
  }
  return { template, layout: tableLayout(template, (text) => tokenizer.encode(text, { addSpecialTokens: false }), values) };
}

/**
 * `{soft:N}{input}{answer}` (or a named or word-started span): PEFT's prompt tuning exactly, so anything that
 * loads prompt tuning (PEFT, our server, export) sees the same rows. Written text anywhere would be lost there.
 */
export function isPromptTuning(template: Template): boolean {
  const [soft, input, answer, ...rest] = template.segments;
  return rest.length === 0 && soft?.kind === "soft" && input?.kind === "slot" && input.name === "input" && answer?.kind === "answer";
}

/** Each block from its words' embeddings, or sampled vocabulary (as prompt tuning's default), each with its own draw. */
function initTable(layout: TableLayout, { lm, tokenizer, seed }: MethodContext): Param {
  const d = lm.config.hiddenSize;
  const data = new Float32Array(layout.rows * d);
  const special = [...tokenizer.eosTokenIds, ...(tokenizer.bosTokenId === undefined ? [] : [tokenizer.bosTokenId])];
  [...layout.blocks.values()].forEach((block, k) => {
    const textIds = block.initText === undefined ? undefined : tokenizer.encode(block.initText, { addSpecialTokens: false });
    const init = initPrompt({ numVirtual: block.length, init: textIds === undefined ? "vocab" : "text", seed: seed + k, embeddings: lm.weights.tensor(lm.embeddingName), textIds, excludeIds: special });
    data.set(init, block.offset * d);
  });
  return { shape: [layout.rows, d], data };
}

/** soft_index and soft_mask for a batch of rendered rows, wherever their padding sits. */
function softFeeds(batch: Batch<ArrayLike<number>>, rows: number) {
  const { batchSize: B, seqLen: T } = batch;
  const index = new BigInt64Array(B * T);
  const mask = new Uint8Array(B * T);
  for (let b = 0; b < B; b++) {
    const soft = batch.items?.[b]?.softIndex;
    if (soft === undefined) fail("usage", "a template adapter needs rows rendered through its template (src/template/render.ts)", { field: `rows[${b}]` });
    let start = 0; // rows are contiguous: the first real token is where the row starts
    while (start < T && batch.attentionMask[b * T + start] === 0) start++;
    soft.forEach((s, t) => {
      if (s < 0) return;
      if (s >= rows) fail("usage", `row ${b} uses soft vector ${s}, but the table has ${rows}`, { field: `rows[${b}]` });
      index[b * T + start + t] = BigInt(s);
      mask[b * T + start + t] = 1;
    });
  }
  return { soft_index: { data: index, dims: [B, T] }, soft_mask: { data: mask, dims: [B, T, 1] } };
}
