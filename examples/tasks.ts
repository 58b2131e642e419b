/**
 * The synthetic tasks behind the offline demo, the tokenizer they are written in, and a small greedy
 * decoder to score a model on them.
 *
 * Four skills over short digit sequences, each announced by a one-token tag:
 *
 *     copy: 3 1 4 =       → 3 1 4
 *     reverse: 3 1 4 =    → 4 1 3
 *     sort: 3 1 4 =       → 1 3 4
 *     increment: 3 1 4 =  → 4 2 5        (each digit + 1, mod 10)
 *
 * Every input is used only where the four answers differ pairwise, so an untagged input (`3 1 4 = `)
 * never says which skill is wanted: a model without the tag can do no better than guess the task.
 * The pretraining data (examples/pretrain.ts) is tagged; the soft-prompt datasets
 * (examples/make-datasets.ts) are untagged, so a soft prompt has to stand in for the tag.
 *
 * Text format: tokens separated by single spaces; the prompt ends in "= " and the completion is the
 * answer alone ("4 1 3"), so `prompt + completion` is the whole line and a generated answer decodes to
 * exactly the completion. The end of every answer is `<|endoftext|>`.
 */
import * as o from "../src/graph/ops.js";
import type { CausalLM } from "../src/models/causal-lm.js";
import { arangePositions, attentionPattern, idsTensor } from "../src/models/inputs.js";
import { Program, type Tensor } from "../src/runtime/session.js";
import type { Tokenizer } from "../src/tokenizer/index.js";
import { fail } from "../src/util/errors.js";
import type { Rng } from "../src/util/rng.js";

export const TASKS = ["copy", "reverse", "sort", "increment"] as const;
export type Task = (typeof TASKS)[number];

/** The tag that announces each task in the pretraining data: one token each. */
export const TAGS: Readonly<Record<Task, string>> = {
  copy: "copy:",
  reverse: "reverse:",
  sort: "sort:",
  increment: "increment:",
};

/** Inputs have MIN_LENGTH..MAX_LENGTH digits. */
export const MIN_LENGTH = 3;
export const MAX_LENGTH = 6;
/** Answers are as long as their inputs; one more step generates the EOS. */
export const MAX_NEW_TOKENS = MAX_LENGTH + 1;

export const EOS = "<|endoftext|>";
export const UNK = "<unk>";
export const SEPARATOR = "=";

// ---------------------------------------------------------------- tasks

/** The answer of `task` for the digits `xs`. */
export function solve(task: Task, xs: readonly number[]): number[] {
  switch (task) {
    case "copy":
      return [...xs];
    case "reverse":
      return [...xs].reverse();
    case "sort":
      return [...xs].sort((a, b) => a - b);
    case "increment":
      return xs.map((x) => (x + 1) % 10);
  }
}

/** True when the four tasks give four different answers: the input alone cannot reveal the task. */
export function isUnambiguous(xs: readonly number[]): boolean {
  const answers = new Set(TASKS.map((t) => solve(t, xs).join("")));
  return answers.size === TASKS.length;
}

/**
 * About one input in five is held out of pretraining (by a hash of its digits, so the split needs no
 * state): the pretraining evaluation and the soft-prompt validation sets use only these.
 */
export function isHeldOut(xs: readonly number[]): boolean {
  let h = 0x811c9dc5; // FNV-1a, 32-bit
  for (const x of xs) h = Math.imul(h ^ (x + 48), 0x01000193) >>> 0;
  h ^= xs.length;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  return (h >>> 0) % 5 === 0;
}

export type Split = "train" | "heldout";

/** A random unambiguous input from one side of the split: uniform length, then uniform digits. */
export function sampleInput(rng: Rng, split: Split): number[] {
  for (;;) {
    const length = MIN_LENGTH + rng.int(MAX_LENGTH - MIN_LENGTH + 1);
    const xs = Array.from({ length }, () => rng.int(10));
    if (isUnambiguous(xs) && isHeldOut(xs) === (split === "heldout")) return xs;
  }
}

/** `count` distinct inputs from one side of the split. */
export function sampleInputs(rng: Rng, split: Split, count: number, exclude: ReadonlySet<string> = new Set()): number[][] {
  const seen = new Set(exclude);
  const out: number[][] = [];
  while (out.length < count) {
    const xs = sampleInput(rng, split);
    const key = xs.join("");
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(xs);
  }
  return out;
}

export interface Example {
  prompt: string;
  completion: string;
}

/** `"reverse: 3 1 4 = "` with a task, `"3 1 4 = "` without. */
export function promptText(xs: readonly number[], task?: Task): string {
  const body = `${xs.join(" ")} ${SEPARATOR} `;
  return task === undefined ? body : `${TAGS[task]} ${body}`;
}

/** `"4 1 3"`: the answer alone, as it decodes from the generated tokens. */
export function completionText(task: Task, xs: readonly number[]): string {
  return solve(task, xs).join(" ");
}

/** One example of `task`; the prompt carries the tag only when `tagged`. */
export function makeExample(task: Task, xs: readonly number[], tagged: boolean): Example {
  return { prompt: promptText(xs, tagged ? task : undefined), completion: completionText(task, xs) };
}

// ---------------------------------------------------------------- tokenizer

/** Ids: the special tokens, the separator, the digits, then the tags. */
export const VOCAB: readonly string[] = [EOS, UNK, SEPARATOR, ..."0123456789", ...TASKS.map((t) => TAGS[t])];

/**
 * The model folder's tokenizer files. tokenizer.json is a word-level tokenizer in the Hugging Face
 * format: split on whitespace, look each word up whole (a WordPiece model whose vocabulary has no
 * "##" pieces, so a word is one token or `<unk>`), no normaliser, no post-processor, and no decoder,
 * so decoding joins the tokens with single spaces. Both the Rust library and @huggingface/tokenizers
 * load it.
 */
export function tokenizerFiles(): { tokenizer: object; tokenizerConfig: object } {
  const special = (content: string, id: number) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(EOS, 0), special(UNK, 1)],
    normalizer: null,
    pre_tokenizer: { type: "WhitespaceSplit" },
    post_processor: null,
    decoder: null,
    model: {
      type: "WordPiece",
      unk_token: UNK,
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(VOCAB.map((token, id) => [token, id])),
    },
  };
  const tokenizerConfig = {
    added_tokens_decoder: { "0": special(EOS, 0), "1": special(UNK, 1) },
    bos_token: null,
    eos_token: EOS,
    pad_token: EOS,
    unk_token: UNK,
    add_bos_token: false,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: 64,
    tokenizer_class: "PreTrainedTokenizerFast",
  };
  return { tokenizer, tokenizerConfig };
}

// ---------------------------------------------------------------- greedy decoding

const decoders = new WeakMap<CausalLM, Promise<Program>>();

/** ids [B, T] → logits [B, vocab] at each row's last real position (`last`, flat indices b·T + t). */
function lastLogitsProgram(lm: CausalLM): Promise<Program> {
  let program = decoders.get(lm);
  if (program === undefined) {
    const d = lm.config.hiddenSize;
    const ids = o.input("input_ids", "int64", ["batch", "seq"]);
    const positions = o.input("position_ids", "int64", ["batch", "seq"]);
    const allowed = o.input("allowed", "bool", ["batch", 1, "seq", "seq"]);
    const last = o.input("last", "int64", ["batch"]);
    const { hidden } = lm.forward({ inputsEmbeds: lm.embed(ids), positions, allowed });
    const logits = lm.lmHead(o.gather(o.reshape(hidden, [-1, d]), last, 0)); // [B, vocab]
    program = Program.compile({ logits });
    decoders.set(lm, program);
  }
  return program;
}

export interface GreedyOptions {
  maxNewTokens: number;
  /** Generation stops at any of these (not included in the output). */
  eosTokenIds: readonly number[];
  /** Rows per forward pass. */
  batchSize?: number;
}

/**
 * Greedy decoding, without a KV cache: every step reruns the whole sequence, which costs nothing at
 * these lengths. Rows of different lengths are right-padded; under the causal mask padding that comes
 * after a row's last token cannot change it, so no padding mask is needed. Returns the new ids per
 * prompt, without the EOS.
 */
export async function greedyDecode(
  lm: CausalLM,
  prompts: readonly (readonly number[])[],
  { maxNewTokens, eosTokenIds, batchSize = 256 }: GreedyOptions,
): Promise<number[][]> {
  if (prompts.some((p) => p.length === 0)) fail("usage", "every prompt needs at least one token", { op: "greedyDecode" });
  const program = await lastLogitsProgram(lm);
  const vocab = lm.config.vocabSize;
  const stop = new Set(eosTokenIds);
  const pad = eosTokenIds[0] ?? 0;
  // The weights as they are now (fed afresh each run, so a model being trained is read as it stands).
  const weights: Record<string, Tensor> = {};
  for (const name of lm.weights.names()) {
    const { data, shape } = lm.weights.tensor(name);
    weights[name] = { data, dims: shape };
  }
  const out: number[][] = prompts.map(() => []);
  for (let start = 0; start < prompts.length; start += batchSize) {
    const rows = prompts.slice(start, start + batchSize).map((p) => [...p]);
    const done = rows.map(() => false);
    for (let step = 0; step < maxNewTokens && done.includes(false); step++) {
      const T = Math.max(...rows.map((r) => r.length));
      const B = rows.length;
      const result = await program.run({
        ...weights,
        input_ids: idsTensor(rows.map((r) => [...r, ...Array<number>(T - r.length).fill(pad)])),
        position_ids: arangePositions(B, T),
        allowed: attentionPattern(rows.map(() => Array<number>(T).fill(1)), T),
        last: { data: BigInt64Array.from(rows, (r, b) => BigInt(b * T + r.length - 1)), dims: [B] },
      });
      const logits = result.logits.data as Float32Array;
      rows.forEach((row, b) => {
        if (done[b]) return;
        let best = 0;
        for (let v = 1; v < vocab; v++) if (logits[b * vocab + v] > logits[b * vocab + best]) best = v;
        if (stop.has(best)) done[b] = true;
        else {
          row.push(best);
          out[start + b].push(best);
        }
      });
    }
  }
  return out;
}

/** Greedy answers to each prompt, decoded to text (special tokens dropped). */
export async function generateAnswers(lm: CausalLM, tokenizer: Tokenizer, prompts: readonly string[]): Promise<string[]> {
  const ids = prompts.map((p) => tokenizer.encode(p, { addSpecialTokens: true }));
  const answers = await greedyDecode(lm, ids, { maxNewTokens: MAX_NEW_TOKENS, eosTokenIds: tokenizer.eosTokenIds });
  return answers.map((a) => (a.length === 0 ? "" : tokenizer.decode(a, { skipSpecialTokens: true })));
}

/** Fraction of examples whose greedy answer is exactly the completion. */
export async function exactMatch(lm: CausalLM, tokenizer: Tokenizer, examples: readonly Example[]): Promise<number> {
  const answers = await generateAnswers(lm, tokenizer, examples.map((e) => e.prompt));
  return answers.filter((a, i) => a === examples[i].completion).length / examples.length;
}
