/**
 * What a request's `model` names: the base model (its id, e.g. `tiny-tasks`, or the word `base`), an
 * adapter on it (`base:reverse`, `tiny-tasks:reverse@2`) or an adapter alone (`reverse`, `reverse@2`).
 * `GET /v1/models` lists the base model and every adapter's latest version (with all its versions).
 */
import type { LiveRegistry, ServedAdapter } from "./live-registry.js";
import { parseAdapterRef } from "./registry.js";
import { serveFail } from "./errors.js";
import { SoftpromptError } from "../util/errors.js";

export const BASE_ALIAS = "base";

export interface ResolvedModel {
  /** Undefined: the bare base model. */
  adapter?: ServedAdapter;
  /** For metrics: the adapter's name, or "base". */
  label: string;
}

export function resolveModel(model: string, baseId: string, registry: LiveRegistry): ResolvedModel {
  const isBase = (s: string) => s === baseId || s === BASE_ALIAS;
  if (isBase(model)) return { label: BASE_ALIAS };
  const colon = model.indexOf(":");
  if (colon >= 0 && !isBase(model.slice(0, colon))) {
    serveFail("model_not_found", `the model ${JSON.stringify(model)} does not exist: this server serves ${JSON.stringify(baseId)} (also called "base"), so write base:ADAPTER or the adapter's name`, "model");
  }
  const ref = colon >= 0 ? model.slice(colon + 1) : model;
  let parsed;
  try {
    parsed = parseAdapterRef(ref, "model");
  } catch (err) {
    if (err instanceof SoftpromptError) serveFail("model_not_found", `the model ${JSON.stringify(model)} does not exist: ${err.message}`, "model");
    throw err;
  }
  const adapter = registry.resolve(parsed, "model");
  return { adapter, label: adapter.name };
}

/** OpenAI's model list, with what the registry knows about each adapter. */
export function listModels(baseId: string, created: number, registry: LiveRegistry) {
  const base = { id: baseId, object: "model", created, owned_by: "softprompt", root: baseId, parent: null };
  const adapters = registry.list().map(({ name, versions }) => {
    const latest = versions[0];
    return {
      id: name,
      object: "model",
      created: Math.floor(Date.parse(latest.metadata.created) / 1000),
      owned_by: "softprompt",
      root: baseId,
      parent: baseId,
      version: latest.version,
      versions: versions.map((v) => v.version),
      method: latest.metadata.method,
      metrics: latest.metadata.metrics,
    };
  });
  return { object: "list", data: [base, ...adapters] };
}
