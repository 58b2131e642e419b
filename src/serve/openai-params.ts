/**
 * Request bodies as OpenAI's API defines them (completions, chat completions) plus /v1/classify, checked
 * with zod. Every field the server does not know is refused by name; fields OpenAI has but the engine
 * cannot honour are refused unless they hold their neutral value (`echo: false`, `best_of: 1` …),
 * so a client never silently gets something other than what it asked for.
 * Extensions, named as vLLM names them: `top_k`, `repetition_penalty`.
 */
import { z } from "zod";
import { parseWith, isPlainObject } from "../formats/json.js";
import { serveFail } from "./errors.js";

const tokenIds = z.array(z.number().int().min(0)).min(1);

const sampling = {
  model: z.string().min(1),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  n: z.number().int().min(1).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.strictObject({ include_usage: z.boolean().optional() }).nullish(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullish(),
  seed: z.number().int().min(-(2 ** 53) + 1).max(2 ** 53 - 1).nullish(),
  user: z.string().optional(),
  top_k: z.number().int().min(-1).optional(),
  repetition_penalty: z.number().gt(0).optional(),
  /** softprompt's: a template adapter's learned control codes, {"TASK": "sort"} (README: Templates). */
  codes: z.record(z.string(), z.string()).optional(),
};

export const completionSchema = z.strictObject({
  ...sampling,
  /** Each token's log-probability and this many most likely alternatives' (OpenAI's limit: 5). */
  logprobs: z.number().int().min(0).max(5).nullish(),
  prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds, z.array(tokenIds).min(1)]),
});

const contentPart = z.strictObject({ type: z.literal("text"), text: z.string() });
const message = z.strictObject({
  role: z.enum(["system", "developer", "user", "assistant"]),
  content: z.union([z.string(), z.array(contentPart)]),
  name: z.string().optional(),
});

export const chatSchema = z.strictObject({
  ...sampling,
  messages: z.array(message).min(1),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  /** Needs `logprobs: true`. */
  top_logprobs: z.number().int().min(0).max(20).nullish(),
});

export const classifySchema = z.strictObject({
  model: z.string().min(1),
  input: z.string().min(1),
  choices: z.array(z.string().min(1)).min(1).max(64),
  user: z.string().optional(),
});

export type CompletionBody = z.infer<typeof completionSchema>;
export type ChatBody = z.infer<typeof chatSchema>;
export type ClassifyBody = z.infer<typeof classifySchema>;

const isFalsy = (v: unknown) => v === undefined || v === null || v === false || v === 0;
const isEmpty = (v: unknown) => v === undefined || v === null || (Array.isArray(v) ? v.length === 0 : isPlainObject(v) && Object.keys(v).length === 0);

/** OpenAI parameters the engine cannot honour: accepted only at their neutral value. Each says why. */
const UNSUPPORTED: Record<string, [neutral: (v: unknown) => boolean, why: string]> = {
  echo: [isFalsy, "the prompt is not echoed"],
  best_of: [(v) => v === undefined || v === null || v === 1, "best_of is not supported; use n"],
  suffix: [(v) => v === undefined || v === null || v === "", "insertion (suffix) is not supported"],
  presence_penalty: [isFalsy, "use repetition_penalty (HF's)"],
  frequency_penalty: [isFalsy, "use repetition_penalty (HF's)"],
  logit_bias: [isEmpty, "logit bias is not supported"],
  tools: [isEmpty, "tool calls are not supported"],
  tool_choice: [(v) => v === undefined || v === null || v === "none", "tool calls are not supported"],
  functions: [isEmpty, "function calls are not supported"],
  function_call: [(v) => v === undefined || v === null || v === "none", "function calls are not supported"],
  parallel_tool_calls: [() => true, ""],
  response_format: [(v) => v === undefined || v === null || (isPlainObject(v) && v.type === "text"), "only text responses are supported"],
};

/**
 * Check a body against a schema: an unknown field, or a known one the engine cannot honour, is a 400
 * naming it; a bad value names its field (OpenAI's `param`).
 */
export function parseBody<T>(schema: z.ZodObject, value: unknown): T {
  if (!isPlainObject(value)) serveFail("unknown_parameter", "the request body must be a JSON object", null);
  const rest: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const unsupported = UNSUPPORTED[key];
    if (unsupported === undefined) rest[key] = v;
    else if (!unsupported[0](v)) serveFail("unsupported_parameter", `${key} is not supported by this server: ${unsupported[1]}`, key);
  }
  const unknown = Object.keys(rest).find((k) => !(k in schema.shape));
  if (unknown !== undefined) serveFail("unknown_parameter", `unrecognized request argument: ${unknown}`, unknown);
  // A bad value fails naming its field as the request spells it (messages[0].role), which is OpenAI's param.
  return parseWith(schema as unknown as z.ZodType<T>, rest, "usage", { describe: true });
}
