// Our GPT-2, Llama and Qwen2 graphs against the logits and hidden states transformers computed.
import { describe, expect, it } from "vitest";
import * as o from "../src/graph/ops.js";
import { arangePositions, attentionPattern, idsTensor, positionsFromMask } from "../src/models/inputs.js";
import { Program } from "../src/runtime/session.js";
import { ARCHS, maxAbsDiff, readCase, rows, loadGoldenModel } from "./helpers/golden.js";

const loadGolden = loadGoldenModel;

describe.each(ARCHS)("%s forward matches transformers", (arch) => {
  it("logits and hidden states at valid positions, with and without mask-derived positions", async () => {
    const lm = await loadGolden(arch);
    const golden = await readCase(arch, "forward");
    const ids = rows(golden.get("input_ids")!);
    const mask = rows(golden.get("attention_mask")!);
    const [B, T] = [ids.length, ids[0].length];

    const inputIds = o.input("input_ids", "int64", ["batch", "seq"]);
    const positions = o.input("position_ids", "int64", ["batch", "seq"]);
    const allowed = o.input("allowed", "bool", ["batch", 1, "seq", "seq"]);
    const { hidden, hiddenStates } = lm.forward({ inputsEmbeds: lm.embed(inputIds), positions, allowed });
    const logits = lm.lmHead(o.reshape(hidden, [-1, lm.config.hiddenSize]));
    const outputs = Object.fromEntries([["logits", logits], ...hiddenStates.map((h, i) => [`hidden_states.${i}`, h] as const)]);
    const program = await Program.compile(outputs);

    const feeds = (pos: { data: BigInt64Array; dims: number[] }) => ({
      ...lm.weights.feeds(),
      input_ids: idsTensor(ids),
      position_ids: pos,
      allowed: attentionPattern(mask, T),
    });
    const valid = (r: number, t: number) => mask[r][t] === 1;
    const out = await program.run(feeds(arangePositions(B, T)));
    const V = lm.config.vocabSize;
    expect(maxAbsDiff(out.logits.data as Float32Array, golden.get("logits")!.data as Float32Array, [B, T, V], valid)).toBeLessThan(1e-4);
    for (let i = 0; i < hiddenStates.length; i++) {
      const want = golden.get(`hidden_states.${i}`)!;
      expect(maxAbsDiff(out[`hidden_states.${i}`].data as Float32Array, want.data as Float32Array, want.shape, valid)).toBeLessThan(1e-4);
    }

    const fromMask = await program.run(feeds(positionsFromMask(mask)));
    const want = golden.get("logits_with_position_ids_from_mask")!.data as Float32Array;
    expect(maxAbsDiff(fromMask.logits.data as Float32Array, want, [B, T, V], valid)).toBeLessThan(1e-4);
  });
});
