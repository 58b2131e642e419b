/**
 * softprompt's library API. The high-level calls mirror the CLI (train, generateText, evaluate,
 * inspect, info); the pieces below them are exported for programs that build their own loops.
 */
export { train, generateText, evaluate, classifyData, dataCheck, inspect, info, loadSoftPrompt, show } from "./workflows.js";
export type { AdapterSummary, TrainOptions, TrainSummary, GenerateOptions as GenerateTextOptions, EvalOptions, EvalReport, InspectReport } from "./workflows.js";

// Models and tokenizers
export { loadModel, buildModel, type Model, type CausalLM, type ModelConfig } from "./models/index.js";
export { registerArchitecture, registeredModelTypes, type Architecture } from "./models/registry.js";
export { resolveModelDir } from "./formats/hub.js";
export { loadTokenizer, type Tokenizer } from "./tokenizer/index.js";

// Data: reading, per-row signals (negative, weight, reward, pairs, label), curation
export { readExamples, tokenizeExamples, makeBatches, splitTrainValid, type Example } from "./data/index.js";
export { rowSignals, type RowSignals } from "./data/signals.js";
export { checkData, type DataCheckReport } from "./data/check.js";

// Templates: slots, soft spans anywhere, learned control codes, context from earlier turns
export * as template from "./template/index.js";

// Feedback: the model's answers into a review file, and the review back into training rows
export { annotate, type AnnotateOptions, type AnnotateReport } from "./feedback/annotate.js";
export { readReview, writeReview, type ReviewItem } from "./feedback/review.js";
export { reviewTrainingRows } from "./feedback/rows.js";

// Prompt tuning and the PEFT format
export { registerMethod, methodByName, registeredMethods, saveAdapter, loadAdapter, checkAdapterFits, type PeftMethod, type Adapter, type Params } from "./peft/index.js";
export { savePromptAdapter, loadPromptAdapter, type PromptAdapter } from "./peft/prompt-tuning/index.js";
export { initPrompt } from "./peft/prompt-tuning/init.js";
export { inspectPrompt, promptSimilarity } from "./peft/inspect.js";

// Training
export { trainAdapter, trainPrompt, type TrainRun, type TrainEvent, type TrainResult } from "./train/trainer.js";
export { parseTrainConfig, type TrainConfig } from "./train/config.js";
export { lossGraph, lossFeeds, lmObjective, type Objective } from "./objective/lm.js";
export { combinedObjective, trainingObjective, DEFAULT_WEIGHTS as DEFAULT_OBJECTIVE_WEIGHTS, type ObjectiveWeights } from "./objective/combine.js";
export { promptLossGraph, promptLossFeeds } from "./peft/prompt-tuning/model.js";
export { LossEvaluator } from "./eval/loss.js";
export { AdamW, Adafactor } from "./train/optim.js";

// Prompt distillation: a long hard prompt into a few soft vectors (or a key/value prefix)
export { distill, klObjective, type DistillOptions, type DistillReport } from "./distill/index.js";

// Inference
export { generate, type GenerateRequest, type Generation, type SoftPrompt, type PrefixPrompt, type LoraPrompt, type AdapterPrompt } from "./infer/generate.js";
export { mergeLora } from "./peft/lora/merge.js";
export { PromptCache } from "./infer/kv-cache.js";
export { GenerationEngine, type RowRequest, type RowToken } from "./infer/engine.js";
export { scoreCompletions, scoreChoices } from "./infer/score.js";
export { evaluateTask } from "./eval/task.js";
export { classify, calibrate, readVerbalizer, type Verbalizer, type ClassifyReport } from "./eval/classify.js";
export { comparePrompts, type ComparePromptsOptions, type ComparePromptsReport } from "./compare-prompts.js";
export { quantizeModel, QUANTIZE_MODES, type QuantizeMode } from "./quantize/index.js";

// Hand-off to vLLM (--enable-prompt-embeds): a soft prompt and an input as one torch.save'd tensor in a completions request
export { exportEmbeds, promptEmbeds, vllmCompletionRequest, type ExportEmbedsOptions, type ExportEmbedsResult, type VllmCompletionRequest } from "./export/vllm.js";
export { torchSave } from "./export/torch-save.js";

// The engine
export * as ops from "./graph/ops.js";
export * as nn from "./graph/nn.js";
export { grad } from "./graph/autodiff.js";
export { Program, type Tensor } from "./runtime/session.js";
export { SoftpromptError, type ErrorCode } from "./util/errors.js";
