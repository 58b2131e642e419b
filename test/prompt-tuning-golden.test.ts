// Prompt tuning against real PEFT: loss, logits and d loss / d prompt_embeddings on the golden models.
import { describe, expect, it } from "vitest";
import * as o from "../src/graph/ops.js";
import { grad } from "../src/graph/autodiff.js";
import { promptLossFeeds, promptLossGraph } from "../src/peft/prompt-tuning/model.js";
import { Program } from "../src/runtime/session.js";
import { ARCHS, maxAbsDiff, readCase, loadGoldenModel } from "./helpers/golden.js";

const loadGolden = loadGoldenModel;

describe.each(ARCHS)("%s prompt tuning matches PEFT", (arch) => {
  it("loss, logits and prompt gradient", async () => {
    const lm = await loadGolden(arch);
    const golden = await readCase(arch, "prompt_tuning");
    const prompt = golden.get("prompt_embeddings")!;
    const n = prompt.shape[0];
    const [B, T] = golden.get("input_ids")!.shape;
    const graph = promptLossGraph(lm, n);
    const [gPrompt] = grad(graph.loss, [graph.prompt!]);
    const logits = lm.lmHead(o.reshape(graph.hidden, [-1, lm.config.hiddenSize]));
    const program = await Program.compile({ loss: graph.loss, grad: gPrompt, logits });
    const batch = {
      inputIds: golden.get("input_ids")!.data,
      attentionMask: golden.get("attention_mask")!.data,
      labels: golden.get("labels")!.data,
      batchSize: B,
      seqLen: T,
    };
    const out = await program.run({
      ...lm.weights.feeds(),
      ...promptLossFeeds(batch, n),
      prompt: { data: prompt.data as Float32Array, dims: prompt.shape },
    });
    const wantLoss = (golden.get("loss")!.data as Float32Array)[0];
    expect(Math.abs((out.loss.data as Float32Array)[0] - wantLoss)).toBeLessThan(1e-5);

    const mask = golden.get("attention_mask")!.data as number[];
    const valid = (r: number, p: number) => p < n || mask[r * T + (p - n)] === 1;
    const wantLogits = golden.get("logits")!;
    expect(maxAbsDiff(out.logits.data as Float32Array, wantLogits.data as Float32Array, wantLogits.shape, valid)).toBeLessThan(1e-4);

    const wantGrad = golden.get("grad.prompt_embeddings")!.data as Float32Array;
    const got = out.grad.data as Float32Array;
    for (let i = 0; i < wantGrad.length; i++) expect(Math.abs(got[i] - wantGrad[i])).toBeLessThanOrEqual(1e-5 + 1e-3 * Math.abs(wantGrad[i]));
  });
});
