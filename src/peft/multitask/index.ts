/**
 * Multi-task prompt tuning as a registered method (PEFT MULTITASK_PROMPT_TUNING): a shared prompt and
 * per-task low-rank factors (see model.ts), trained on data whose rows name their task, each row with
 * its task's prompt. The adapter holds all three tensors, as PEFT saves them, so it is also where a new
 * run starts from; inference uses one task's prompt.
 */
import { fail } from "../../util/errors.js";
import { registerMethod, type PeftMethod, type Param } from "../method.js";
import { type MultitaskConfig, type MultitaskOptions, multitaskConfigSchema, multitaskOptionsSchema } from "./config.js";
import { effectiveInit, initMultitask } from "./init.js";
import { COLS, ROWS, SHARED, multitaskAdaptation, taskIndex, taskNames, taskPrompt } from "./model.js";

/** PEFT's init names; an init from another adapter is recorded as "RANDOM", since PEFT would re-read that adapter when it builds the module. */
const PEFT_INIT = { random: "RANDOM", text: "TEXT", average_source_tasks: "RANDOM", exact_source_task: "RANDOM", only_source_shared: "RANDOM" } as const;

export const multitaskPromptTuning: PeftMethod<MultitaskOptions, MultitaskConfig> = {
  name: "mpt",
  peftType: "MULTITASK_PROMPT_TUNING",
  options: multitaskOptionsSchema,
  // Starting from task factors near zero, the prompts need prompt tuning's larger steps (Lester et al.: 0.3).
  trainerDefaults: { lr: 0.1 },
  config: multitaskConfigSchema,

  makeConfig(options, { lm, baseModelName }) {
    const tasks = options.tasks ?? [];
    if (tasks.length === 0) fail("data", `multi-task prompt tuning needs tasks: give tasks, or data whose rows name theirs in the field "${options.taskField}"`, { field: "tasks" });
    const init = PEFT_INIT[effectiveInit(options)];
    return {
      auto_mapping: null,
      base_model_name_or_path: baseModelName,
      inference_mode: true,
      modules_to_save: null,
      num_attention_heads: lm.config.numHeads,
      num_layers: lm.config.numLayers,
      num_ranks: options.numRanks,
      num_tasks: tasks.length,
      num_transformer_submodules: 1,
      num_virtual_tokens: options.numVirtualTokens,
      peft_type: "MULTITASK_PROMPT_TUNING",
      prompt_tuning_init: init,
      prompt_tuning_init_state_dict_path: null,
      prompt_tuning_init_task: 0,
      prompt_tuning_init_text: init === "TEXT" ? options.promptTuningInitText! : null,
      revision: null,
      task_names: tasks,
      task_type: "CAUSAL_LM",
      token_dim: lm.config.hiddenSize,
      tokenizer_kwargs: null,
      tokenizer_name_or_path: init === "TEXT" ? baseModelName : null,
    };
  },

  initParams: (options, ctx) => initMultitask(options, multitaskPromptTuning.makeConfig(options, ctx), ctx),

  adapt: (config, params) => multitaskAdaptation(config, params),

  toPeftTensors: (_config, params) => new Map([SHARED, COLS, ROWS].map((name) => [name, params.get(name)!])),

  async fromPeftTensors(config, read, where) {
    if (config.num_transformer_submodules !== 1) {
      fail("adapter", `num_transformer_submodules ${config.num_transformer_submodules} is for encoder-decoder models; expected 1`, { file: where, field: "num_transformer_submodules" });
    }
    const { num_tasks: T, num_virtual_tokens: n, num_ranks: r, token_dim: d } = config;
    const want: [string, number[]][] = [[SHARED, [n, d]], [COLS, [T, n, r]], [ROWS, [T, r, d]]];
    const params = new Map<string, Param>();
    for (const [name, shape] of want) {
      const p = await read(name);
      if (p.shape.join() !== shape.join()) fail("adapter", `shape [${p.shape.join(", ")}] does not match the config's [${shape.join(", ")}]`, { file: where, tensor: name });
      params.set(name, p);
    }
    return params;
  },

  inferenceForm(config, params, task) {
    // One task needs no name; with several, the caller says which.
    if (task === undefined && config.num_tasks > 1) fail("usage", `this adapter holds a prompt per task (${taskNames(config).join(", ")}); name the task to use`, { field: "task" });
    return { kind: "embeddings", embeddings: taskPrompt(config, params, task === undefined ? 0 : taskIndex(config, task)) };
  },
};

registerMethod(multitaskPromptTuning);
