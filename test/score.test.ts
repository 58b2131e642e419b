// Completion log-likelihoods: PEFT's prompt-tuning loss on the golden models, agreement with greedy
// generation, batch independence, and classification by choices.
import { describe, expect, it } from "vitest";
import { SoftpromptError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";
import { type SoftPrompt, generate } from "../src/infer/generate.js";
import { type ScoreRequest, scoreChoices, scoreCompletions } from "../src/infer/score.js";
import { ARCHS, readCase, rows, loadGoldenModel } from "./helpers/golden.js";

const loadGolden = loadGoldenModel;

function randomPrompt(id: string, n: number, d: number, seed: number): SoftPrompt {
  const rng = new Rng(seed);
  return { id, embeddings: Float32Array.from({ length: n * d }, () => rng.normal()), dims: [n, d] };
}

describe.each(ARCHS)("%s scoring", (arch) => {
  it("the mean NLL of the labelled tokens is PEFT's prompt-tuning loss", async () => {
    const lm = await loadGolden(arch);
    const golden = await readCase(arch, "prompt_tuning");
    const table = golden.get("prompt_embeddings")!;
    const prompt: SoftPrompt = { id: `golden-loss-${arch}`, embeddings: table.data as Float32Array, dims: table.shape };
    const ids = rows(golden.get("input_ids")!);
    const mask = rows(golden.get("attention_mask")!);
    const labels = rows(golden.get("labels")!);
    // Each row: its real tokens, split where the labels start (labelled tokens form a suffix).
    const requests: ScoreRequest[] = ids.map((row, b) => {
      const real = row.filter((_, t) => mask[b][t] === 1);
      const labelled = labels[b].filter((l) => l !== -100);
      return { inputIds: real.slice(0, real.length - labelled.length), completionIds: labelled, prompt };
    });
    expect(requests[0].inputIds).toEqual([]); // row 1's first token is predicted by the last virtual token
    const scores = await scoreCompletions(lm, requests, { positions: "peft" });
    const count = requests.reduce((n, r) => n + r.completionIds.length, 0);
    const loss = -scores.reduce((s, x) => s + x.logLikelihood, 0) / count;
    expect(Math.abs(loss - (golden.get("loss")!.data as Float32Array)[0])).toBeLessThan(1e-5);
    scores.forEach((s, b) => {
      expect(s.tokenLogProbs).toHaveLength(requests[b].completionIds.length);
      expect(s.meanLogLikelihood).toBeCloseTo(s.logLikelihood / s.tokenLogProbs.length, 10);
      expect(s.tokenLogProbs.every((x) => x < 0 && Number.isFinite(x))).toBe(true);
    });
  });

  it("picks the greedy continuation among choices that differ from it, with and without a prompt", async () => {
    const lm = await loadGolden(arch);
    const prompt = randomPrompt(`choices-${arch}`, 4, lm.config.hiddenSize, 3);
    const inputIds = [297, 303, 328, 319, 82];
    for (const p of [prompt, undefined]) {
      const [g] = await generate(lm, undefined, [{ inputIds, prompt: p, maxNewTokens: 3 }]);
      // The greedy last token is the argmax after the shared prefix: no other last token can beat it.
      const others = [1, 2, 3].map((k) => [g.ids[0], g.ids[1], (g.ids[2] + 97 * k) % 512]);
      const choices = [others[0], others[1], g.ids, others[2]];
      const { best, scores } = await scoreChoices(lm, { inputIds, choices, prompt: p });
      expect(best).toBe(2);
      // Single tokens: the greedy first token wins too.
      const first = await scoreChoices(lm, { inputIds, choices: [[(g.ids[0] + 1) % 512], [g.ids[0]]], prompt: p });
      expect(first.best).toBe(1);
      expect(first.scores[1].logLikelihood).toBeCloseTo(scores[2].tokenLogProbs[0], 4);
    }
  });

  it("a mixed batch scores each row as scoring it alone does", async () => {
    const lm = await loadGolden(arch);
    const d = lm.config.hiddenSize;
    const prompts = [randomPrompt(`s-${arch}-a`, 2, d, 11), randomPrompt(`s-${arch}-b`, 5, d, 12)];
    const rng = new Rng(9);
    const toks = (n: number) => Array.from({ length: n }, () => rng.int(512));
    const requests: ScoreRequest[] = [
      { inputIds: toks(3), completionIds: toks(2), prompt: prompts[0] },
      { inputIds: toks(1), completionIds: toks(5) },
      { inputIds: [], completionIds: toks(3), prompt: prompts[1] },
      { inputIds: toks(6), completionIds: toks(1), prompt: prompts[1] },
      { inputIds: toks(2), completionIds: toks(4) },
    ];
    const together = await scoreCompletions(lm, requests);
    for (let i = 0; i < requests.length; i++) {
      const [alone] = await scoreCompletions(lm, [requests[i]]);
      alone.tokenLogProbs.forEach((x, j) => expect(Math.abs(x - together[i].tokenLogProbs[j])).toBeLessThan(1e-4));
    }
  });
});

describe("bad score requests", () => {
  it("fail with code usage", async () => {
    const lm = await loadGolden("qwen2");
    const usage = async (request: ScoreRequest, pattern: RegExp) => {
      const err = await scoreCompletions(lm, [request]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SoftpromptError);
      expect((err as SoftpromptError).code).toBe("usage");
      expect((err as SoftpromptError).message).toMatch(pattern);
    };
    await usage({ inputIds: [1], completionIds: [] }, /completion is empty/);
    await usage({ inputIds: [], completionIds: [1] }, /input is empty/);
    await usage({ inputIds: [1], completionIds: [600] }, /outside the vocabulary/);
    await usage({ inputIds: [1], completionIds: [2], prompt: { id: "p", embeddings: new Float32Array(3 * 48), dims: [3, 48] } }, /hidden size is 64/);
    await expect(scoreChoices(lm, { inputIds: [1], choices: [] })).rejects.toThrow(/at least one choice/);
    expect(await scoreCompletions(lm, [])).toEqual([]);
  });
});
