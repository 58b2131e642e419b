/**
 * What a trained adapter is, read from its folder: the PEFT config, the base model's fingerprint in
 * the weights' metadata, and — when the folder is (or sits in) a softprompt run — the run's
 * checkpoint state and training log. Every run file is optional: a PEFT-written adapter has none,
 * and older runs lack fields newer ones record.
 */
import { existsSync, promises as fsp } from "node:fs";
import { dirname, join } from "node:path";
import { ADAPTER_WEIGHTS, BASE_FINGERPRINT, loadAdapter } from "../peft/adapter.js";
import { readJsonFile, isPlainObject } from "../formats/json.js";
import { readLossLog } from "./loss-curve.js";

const LOG_FILE = "train_log.jsonl";
const CHECKPOINT_STATE = join("checkpoint", "state.json");

export interface AdapterSummary {
  adapter: string;
  /** PEFT's peft_type, e.g. "PROMPT_TUNING". */
  method: string;
  /** How the adapter started (prompt tuning: PEFT's prompt_tuning_init, with its text); null for methods without one. */
  init: string | null;
  baseModel: string | null;
  /** sha256 of the base model's token embeddings, when softprompt wrote the adapter. */
  baseFingerprint: string | null;
  /** Prompt-learning methods: virtual tokens and their width; null for others (LoRA). */
  virtualTokens: number | null;
  tokenDim: number | null;
  /** Steps trained, from the run's checkpoint or log; null for an adapter without run files. */
  steps: number | null;
  bestStep: number | null;
  bestValidLoss: number | null;
  /** sha256 of the data the run trained on, by what it is ("--data", "--valid", "tokenized data"), as the checkpoint records it. */
  dataFingerprints: Record<string, string> | null;
  /** When the adapter's weights were written (ISO 8601). */
  created: string;
  /** The folder holding the run's log and checkpoint, when found. */
  run: string | null;
  /** For an adapter made by `softprompt distill`: its teacher prompt and how well it agrees with it (distill.json beside it). */
  distilled: Distilled | null;
}

export interface Distilled {
  teacherPromptSha256: string;
  teacherPromptTokens: number;
  /** Held-out inputs the agreement was measured on. */
  heldOut: number;
  /** Greedy exact match with the teacher, next-token top-1 agreement, mean KL per position. */
  greedy: number;
  top1: number;
  meanKl: number;
}

/** Written by src/distill beside a distilled adapter. */
export const DISTILL_RECORD = "distill.json";

export async function describeAdapter(dir: string): Promise<AdapterSummary> {
  const adapter = await loadAdapter(dir);
  // Read as PEFT writes it; which fields exist depends on the method.
  const config = adapter.config as typeof adapter.config & Record<string, unknown>;
  const init = typeof config.prompt_tuning_init === "string" ? config.prompt_tuning_init : null;
  const initText = typeof config.prompt_tuning_init_text === "string" ? config.prompt_tuning_init_text : null;
  const run = findRunDir(dir);
  const state = run === null ? undefined : await readState(join(run, CHECKPOINT_STATE));
  const log = run !== null && existsSync(join(run, LOG_FILE)) ? await readLossLog(join(run, LOG_FILE)) : [];
  // The checkpoint knows best; the log is the fallback for runs whose checkpoint predates these fields.
  const bestLogged = log.filter((p) => p.validLoss !== undefined).reduce<(typeof log)[number] | undefined>((best, p) => (best === undefined || p.validLoss! < best.validLoss! ? p : best), undefined);
  const stats = await fsp.stat(join(dir, ADAPTER_WEIGHTS));
  return {
    adapter: dir,
    method: config.peft_type,
    init: init === null ? null : init + (initText ? ` (${JSON.stringify(initText)})` : ""),
    baseModel: config.base_model_name_or_path ?? null,
    baseFingerprint: adapter.metadata?.[BASE_FINGERPRINT] ?? null,
    virtualTokens: typeof config.num_virtual_tokens === "number" ? config.num_virtual_tokens : null,
    tokenDim: config.token_dim ?? null,
    steps: numberField(state, "step") ?? log.at(-1)?.step ?? null,
    bestStep: numberField(state, "bestStep") ?? bestLogged?.step ?? null,
    bestValidLoss: numberField(state, "bestValidLoss") ?? bestLogged?.validLoss ?? null,
    dataFingerprints: dataFingerprintsOf(state),
    created: stats.mtime.toISOString(),
    run,
    distilled: await readDistilled(join(dir, DISTILL_RECORD)),
  };
}

/** The run folder: the adapter's own, or its parent for an adapter kept inside a run (e.g. `last/`). */
function findRunDir(dir: string): string | null {
  for (const candidate of [dir, dirname(dir)]) {
    if (existsSync(join(candidate, LOG_FILE)) || existsSync(join(candidate, CHECKPOINT_STATE))) return candidate;
  }
  return null;
}

async function readState(path: string): Promise<Record<string, unknown> | undefined> {
  const state = await readJsonFile(path, "file", { optional: true, expected: "a softprompt checkpoint state" });
  return isPlainObject(state) ? state : undefined;
}

async function readDistilled(path: string): Promise<Distilled | null> {
  const record = await readJsonFile(path, "file", { optional: true, expected: "a distillation record" });
  if (!isPlainObject(record) || typeof record.teacherPromptSha256 !== "string") return null;
  const n = (key: string) => numberField(record, key) ?? Number.NaN;
  return { teacherPromptSha256: record.teacherPromptSha256, teacherPromptTokens: n("teacherPromptTokens"), heldOut: n("heldOut"), greedy: n("greedy"), top1: n("top1"), meanKl: n("meanKl") };
}

function numberField(state: Record<string, unknown> | undefined, key: string): number | undefined {
  const value = state?.[key];
  return typeof value === "number" ? value : undefined;
}

/** The checkpoint's record of data digests; runs from before it was kept have none. */
function dataFingerprintsOf(state: Record<string, unknown> | undefined): Record<string, string> | null {
  const value = state?.fingerprints;
  if (!isPlainObject(value)) return null;
  const entries = Object.entries(value).filter((e): e is [string, string] => typeof e[1] === "string");
  return entries.length > 0 ? Object.fromEntries(entries) : null;
}
