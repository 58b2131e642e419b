/**
 * PEFT's MultitaskPromptTuningConfig (MULTITASK_PROMPT_TUNING) as adapter_config.json holds it, and the
 * training options of multi-task prompt tuning. Fields PEFT writes that we do not use are kept as they
 * are, so a file round-trips unchanged. PEFT knows tasks by index; we add `task_names` (index order),
 * which PEFT's loader ignores (with a warning about an unknown field).
 */
import { z } from "zod";

export const MPT_INITS = ["random", "text", "average_source_tasks", "exact_source_task", "only_source_shared"] as const;
export type MptInit = (typeof MPT_INITS)[number];
/** The inits that read a trained adapter (`initFrom`, PEFT's prompt_tuning_init_state_dict_path). */
export const SOURCE_INITS: readonly MptInit[] = ["average_source_tasks", "exact_source_task", "only_source_shared"];

export const multitaskConfigSchema = z
  .looseObject({
    peft_type: z.literal("MULTITASK_PROMPT_TUNING"),
    task_type: z.literal("CAUSAL_LM"),
    num_virtual_tokens: z.number().int().positive(),
    token_dim: z.number().int().positive(),
    num_transformer_submodules: z.number().int().positive().default(1),
    num_attention_heads: z.number().int().positive().nullish(),
    num_layers: z.number().int().positive().nullish(),
    num_tasks: z.number().int().positive().default(1),
    num_ranks: z.number().int().positive().default(1),
    prompt_tuning_init: z.enum(["RANDOM", "TEXT", "AVERAGE_SOURCE_TASKS", "EXACT_SOURCE_TASK", "ONLY_SOURCE_SHARED"]).default("RANDOM"),
    prompt_tuning_init_text: z.string().nullish(),
    prompt_tuning_init_state_dict_path: z.string().nullish(),
    prompt_tuning_init_task: z.number().int().nonnegative().nullish(),
    tokenizer_name_or_path: z.string().nullish(),
    base_model_name_or_path: z.string().nullish(),
    inference_mode: z.boolean().default(true),
    task_names: z.array(z.string().min(1)).optional(),
  })
  .superRefine((c, ctx) => {
    if (c.task_names !== undefined && c.task_names.length !== c.num_tasks) {
      ctx.addIssue({ code: "custom", message: `names ${c.task_names.length} tasks, but num_tasks is ${c.num_tasks}`, path: ["task_names"] });
    }
    if (c.task_names !== undefined && new Set(c.task_names).size !== c.task_names.length) ctx.addIssue({ code: "custom", message: "names a task twice", path: ["task_names"] });
  });
export type MultitaskConfig = z.infer<typeof multitaskConfigSchema>;

/** Training options of multi-task prompt tuning (Wang et al. 2023), named after PEFT's config keys. */
export const multitaskOptionsSchema = z
  .object({
    numVirtualTokens: z.number().int().positive().default(20).describe("virtual tokens in the prompt"),
    numRanks: z.number().int().positive().default(1).describe("rank of each task's factors: task prompt = shared prompt ⊙ (cols · rows)"),
    taskField: z.string().min(1).default("task").describe("the data field that names each row's task"),
    tasks: z.array(z.string().min(1)).optional().describe("the task names in the adapter's order (default: the tasks of the training data, sorted)"),
    promptTuningInit: z
      .enum(MPT_INITS)
      .default("random")
      .describe("how the prompt starts: random, a text's embeddings, or from a trained adapter (initFrom): its tasks' average, one task, or its shared prompt only"),
    promptTuningInitText: z.string().optional().meta({ description: "the text whose embeddings start the shared prompt (implies --prompt-tuning-init text)", implies: { promptTuningInit: "text" } }),
    promptTuningInitTask: z.string().optional().meta({ description: "the source task (name or index) to start every task from (implies --prompt-tuning-init exact_source_task)", implies: { promptTuningInit: "exact_source_task" } }),
    initFrom: z.string().optional().describe("a trained adapter to start from: a multi-task one's shared prompt and factors, or another method's prompt as the shared prompt"),
  })
  .superRefine((o, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: "custom", message, path: [path] });
    if (o.tasks !== undefined && new Set(o.tasks).size !== o.tasks.length) issue("tasks", "names a task twice");
    if (o.promptTuningInit === "text" && !o.promptTuningInitText) issue("promptTuningInitText", 'promptTuningInit "text" needs promptTuningInitText');
    if (o.promptTuningInit === "exact_source_task" && o.promptTuningInitTask === undefined) issue("promptTuningInitTask", 'promptTuningInit "exact_source_task" needs promptTuningInitTask');
    if (SOURCE_INITS.includes(o.promptTuningInit) && o.initFrom === undefined) issue("initFrom", `promptTuningInit "${o.promptTuningInit}" needs initFrom, the adapter to start from`);
    if (o.initFrom !== undefined && o.promptTuningInit === "text") issue("promptTuningInit", 'initFrom starts the prompt from an adapter, promptTuningInit "text" from words: give one of them');
  });
export type MultitaskOptions = z.infer<typeof multitaskOptionsSchema>;
