/**
 * `POST /v1/classify` {model, input, choices}: each choice scored as a completion of the input (after
 * the adapter's prompt), as `softprompt eval --choice` scores them — input encoded with the tokenizer's
 * special tokens, choices without — and the choices' probabilities, the softmax of their total
 * log-likelihoods. One batched forward, beside the generation batch.
 */
import { randomUUID } from "node:crypto";
import { scoreChoices } from "../infer/score.js";
import { fail } from "../util/errors.js";
import type { ServeContext } from "./context.js";
import { serveFail } from "./errors.js";
import { resolveModel } from "./models.js";
import { type ClassifyBody, classifySchema, parseBody } from "./openai-params.js";

export async function classify(ctx: ServeContext, raw: unknown): Promise<{ label: string; response: object }> {
  const body = parseBody<ClassifyBody>(classifySchema, raw);
  const resolved = resolveModel(body.model, ctx.baseId, ctx.registry);
  const { tokenizer, lm } = ctx.model;
  const inputIds = tokenizer.encode(body.input);
  const choices = body.choices.map((c, i) => {
    const ids = tokenizer.encode(c, { addSpecialTokens: false });
    if (ids.length === 0) fail("usage", "the choice encodes to no tokens", { field: `choices[${i}]` });
    return ids;
  });
  const loaded = resolved.adapter?.loaded;
  if (loaded !== undefined && "template" in loaded) fail("usage", `${resolved.label} is a template adapter: classify does not render templates; use /v1/completions`, { field: "model" });
  const numVirtual = loaded?.numVirtual ?? 0;
  const needed = numVirtual + inputIds.length + Math.max(...choices.map((c) => c.length));
  if (needed > ctx.limits.contextLength) {
    serveFail("context_length_exceeded", `the model's context is ${ctx.limits.contextLength} tokens, but the input with its longest choice${numVirtual > 0 ? ` and ${numVirtual} virtual tokens` : ""} needs ${needed}`, "input");
  }
  const { best, scores } = await scoreChoices(lm, { inputIds, choices, prompt: loaded?.prompt }, { promptCache: ctx.promptCache, padTokenId: tokenizer.padTokenId });
  const max = Math.max(...scores.map((s) => s.logLikelihood));
  const weights = scores.map((s) => Math.exp(s.logLikelihood - max));
  const total = weights.reduce((a, b) => a + b, 0);
  const promptTokens = inputIds.length + choices.reduce((s, c) => s + c.length, 0);
  ctx.metrics.promptTokens.inc({ adapter: resolved.label }, promptTokens);
  return {
    label: resolved.label,
    response: {
      id: `clf-${randomUUID().replaceAll("-", "")}`,
      object: "classification",
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      label: body.choices[best],
      index: best,
      choices: body.choices.map((text, index) => ({ index, text, probability: weights[index] / total, logprob: scores[index].logLikelihood })),
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    },
  };
}
