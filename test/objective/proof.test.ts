// The proofs on the tiny example model (examples/models/tiny-tasks): reverse's training inputs, untagged.
// - Unlikelihood: a soft-prompt run on the positive rows, and the same run with negative rows added (the
//   input copied back, which the model writes when it guesses "copy") under the penalty (weight 0.1): the
//   penalty lowers the held-out negatives' mean token probability, and held-out reverse accuracy stays ≥ 95%.
// - DPO: pairs (reverse's answer chosen, the copied input rejected), DPO alone (no LM term): the chosen-over-
//   rejected margin on held-out pairs rises above the frozen model's without a prompt (the reference).
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { evaluate, loadSoftPrompt, train } from "../../src/workflows.js";
import { loadModel, type Model } from "../../src/models/index.js";
import { scoreCompletions } from "../../src/infer/score.js";
import type { AdapterPrompt } from "../../src/infer/generate.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const rows = (split: "train" | "valid") =>
  readFileSync(fileURLToPath(new URL(`../../examples/data/reverse.${split}.jsonl`, import.meta.url)), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { prompt: string; completion: string });
/** The wrong answer of a reverse row: its input copied back ("3 1 4 = " → "3 1 4"), where that differs. */
const copied = (r: { prompt: string }) => r.prompt.replace(/ = $/, "");
const dir = mkdtempSync(join(tmpdir(), "softprompt-objective-proof-"));
const file = (name: string, lines: object[]) => {
  const path = join(dir, name);
  writeFileSync(path, lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  return path;
};
const train_ = rows("train").filter((r) => copied(r) !== r.completion);
const valid = rows("valid").filter((r) => copied(r) !== r.completion);
const SETTINGS = { model: MODEL, numVirtualTokens: 20, lr: 0.1, batchSize: 8, seed: 0, evalEvery: 1000 };

/** Each completion's token log-probabilities after its prompt (with `prompt` before it), completions ending in EOS as trained. */
async function tokenLogps(model: Model, rows: { prompt: string; completion: string }[], prompt?: AdapterPrompt): Promise<number[][]> {
  const encode = (text: string) => model.tokenizer.encode(text, { addSpecialTokens: false });
  const scores = await scoreCompletions(model.lm, rows.map((r) => ({ inputIds: [...model.tokenizer.specialPrefixIds, ...encode(r.prompt)], completionIds: [...encode(r.completion), model.tokenizer.eosTokenIds[0]], prompt })));
  return scores.map((s) => s.tokenLogProbs);
}

/** The mean probability of a completion token: what unlikelihood lowers (a mean of −log p would be ruled by the rarest tokens). */
const meanTokenP = (logps: number[][]) => mean(logps.flat().map(Math.exp));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("objectives beyond the LM loss on the tiny model", () => {
  it("unlikelihood lowers held-out negatives' likelihood; positive accuracy stays ≥ 95%", { timeout: 300_000 }, async () => {
    const data = { lm: file("positives.jsonl", train_), unlikelihood: file("mixed.jsonl", [...train_, ...train_.map((r) => ({ prompt: r.prompt, completion: copied(r), negative: true }))]) };
    const positives = file("valid.jsonl", valid);
    const model = await loadModel(MODEL);
    const negatives = valid.map((r) => ({ prompt: r.prompt, completion: copied(r) }));
    const runs: Record<string, { accuracy: number; negativeTokenP: number }> = {};
    for (const [name, unlikelihoodWeight] of [["lm", 0], ["unlikelihood", 0.1]] as const) {
      const output = join(dir, name);
      await train({ ...SETTINGS, data: data[name], valid: positives, output, steps: 400, unlikelihoodWeight });
      const { accuracy } = await evaluate({ model: MODEL, data: positives, adapter: output });
      runs[name] = { accuracy: accuracy!, negativeTokenP: meanTokenP(await tokenLogps(model, negatives, (await loadSoftPrompt(output, model, MODEL)).prompt)) };
    }
    const none = meanTokenP(await tokenLogps(model, negatives));
    console.log(JSON.stringify({ heldOutNegatives: negatives.length, noPrompt: { negativeTokenP: none }, ...runs }));
    expect(runs.unlikelihood.accuracy).toBeGreaterThanOrEqual(0.95);
    expect(runs.unlikelihood.negativeTokenP).toBeLessThan(runs.lm.negativeTokenP * 0.85);
    expect(runs.unlikelihood.negativeTokenP).toBeLessThan(none);
  });

  it("DPO raises the chosen-over-rejected margin on held-out pairs", { timeout: 300_000 }, async () => {
    const pairs = (xs: typeof valid) => xs.map((r) => ({ prompt: r.prompt, chosen: r.completion, rejected: copied(r) }));
    const output = join(dir, "dpo");
    await train({ ...SETTINGS, data: file("pairs.jsonl", pairs(train_)), valid: file("valid-pairs.jsonl", pairs(valid)), output, steps: 200, lmWeight: 0, dpoWeight: 1, dpoBeta: 0.1 });
    const model = await loadModel(MODEL);
    const rejected = valid.map((r) => ({ prompt: r.prompt, completion: copied(r) }));
    // The margin of a pair: log p(chosen) − log p(rejected), summed over each completion's tokens; averaged over the pairs.
    const margin = async (prompt?: AdapterPrompt) => {
      const [c, r] = [await tokenLogps(model, valid, prompt), await tokenLogps(model, rejected, prompt)];
      return mean(c.map((lp, i) => sum(lp) - sum(r[i])));
    };
    const trained = await margin((await loadSoftPrompt(output, model, MODEL)).prompt);
    const reference = await margin();
    console.log(JSON.stringify({ heldOutPairs: valid.length, margin: trained, referenceMargin: reference }));
    expect(trained).toBeGreaterThan(reference + 5);
  });
});
