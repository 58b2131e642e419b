// A mixed template on the tiny model: soft vectors sit exactly where the template puts them (read back
// from the embedded sequence, right- and left-padded), a named span used twice is one block of one
// tensor, the splice's gradient matches finite differences, and `{soft:N}{input}{answer}` is prompt
// tuning exactly (the same rows after the span, the same loss as PEFT-style prompt tuning).
import { beforeAll, describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as o from "../../src/graph/ops.js";
import { Program } from "../../src/runtime/session.js";
import { type Model, loadModel } from "../../src/models/index.js";
import { makeBatches, tokenizeExamples, type Example } from "../../src/data/index.js";
import { paddingId } from "../../src/tokenizer/index.js";
import { paramInputs, LossEvaluator } from "../../src/eval/loss.js";
import { promptTuning } from "../../src/peft/prompt-tuning/index.js";
import { templateMethod, isPromptTuning } from "../../src/peft/template/index.js";
import { parseTemplate, tableLayout, renderRows } from "../../src/template/index.js";
import { gradCheck } from "../helpers/gradcheck.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
let model: Model;
beforeAll(async () => {
  model = await loadModel(MODEL);
});

const rows: Example[] = [
  { kind: "prompt", prompt: "3 1 6", completion: "6 1 3", fields: { prompt: "3 1 6", completion: "6 1 3" } },
  { kind: "prompt", prompt: "4 0 8 4 0 2", completion: "2 0 4 8 0 4", fields: {} },
];
const encode = (text: string) => model.tokenizer.encode(text, { addSpecialTokens: false });

describe("a mixed template", () => {
  const source = "{soft:intro:2}copy: {input}{soft:3}{soft:intro:2} = {answer}";

  it("renders ids, labels and soft indices where the template puts them; the shared span is one block", () => {
    const template = parseTemplate(source);
    const layout = tableLayout(template, encode, new Map());
    expect([...layout.blocks.values()].map((b) => [b.key, b.offset, b.length])).toEqual([["intro", 0, 2], ["#1", 2, 3]]);
    const { items } = renderRows({ template, layout }, rows.slice(0, 1), model.tokenizer, { maxLength: 64 });
    const written = [...encode("copy: 3 1 6")];
    const answer = [...encode("6 1 3"), model.tokenizer.eosTokenIds[0]];
    expect(items[0].softIndex).toEqual([0, 1, -1, -1, -1, -1, 2, 3, 4, 0, 1, -1, ...answer.map(() => -1)]);
    expect(items[0].inputIds.filter((_, t) => items[0].softIndex![t] < 0)).toEqual([...written, ...encode(" = "), ...answer]);
    expect(items[0].labels.filter((l) => l !== -100)).toEqual(answer);
  });

  it.each(["right", "left"] as const)("places every soft vector where written (read back from the embedded sequence, %s-padded)", async (padSide) => {
    const template = parseTemplate(source);
    const layout = tableLayout(template, encode, new Map());
    const { items } = renderRows({ template, layout }, rows, model.tokenizer, { maxLength: 64 });
    const d = model.config.hiddenSize;
    const table = { shape: [layout.rows, d], data: Float32Array.from({ length: layout.rows * d }, (_, i) => 100 + i) };
    const config = { num_virtual_tokens: layout.rows, token_dim: d } as never;
    const adaptation = templateMethod.adapt(config, paramInputs(new Map([["table", table]])), model.lm);
    const ids = o.input("input_ids", "int64", ["batch", "seq"]);
    const program = await Program.compile({ embeds: adaptation.spliceEmbeds!(model.lm.embed(ids)), tokens: model.lm.embed(ids) });
    const [batch] = makeBatches(items, { batchSize: 2, padTokenId: paddingId(model.tokenizer), padSide });
    const out = await program.run({ ...model.lm.weights.feeds(), table: { data: table.data, dims: table.shape }, ...adaptation.feeds(batch), input_ids: { data: BigInt64Array.from(batch.inputIds, BigInt), dims: [2, batch.seqLen] } });
    const embeds = out.embeds.data as Float32Array;
    const tokens = out.tokens.data as Float32Array;
    const T = batch.seqLen;
    items.forEach((item, b) => {
      const start = padSide === "left" ? T - item.inputIds.length : 0;
      item.softIndex!.forEach((s, t) => {
        const at = (b * T + start + t) * d;
        const got = [...embeds.subarray(at, at + d)];
        expect(got).toEqual(s >= 0 ? [...table.data.subarray(s * d, (s + 1) * d)] : [...tokens.subarray(at, at + d)]);
      });
    });
  });

  it("a code placed at several positions uses its value's one span at each; a span from words starts at their embeddings", async () => {
    const template = parseTemplate("{code:T:2}{input}{code:T:2} = {answer}");
    const layout = tableLayout(template, encode, new Map([["T", ["a", "b"]]]));
    const { items } = renderRows({ template, layout }, [{ ...rows[0], fields: { T: "b" } }], model.tokenizer, { maxLength: 64 });
    expect(items[0].softIndex!.filter((s) => s >= 0)).toEqual([2, 3, 2, 3]);

    const dir = mkdtempSync(join(tmpdir(), "softprompt-init-"));
    writeFileSync(join(dir, "t.tmpl"), '{soft:"reverse: 1 2"}{input}{soft:2} = {answer}');
    const table = (await templateMethod.initParams({ template: join(dir, "t.tmpl") }, { lm: model.lm, tokenizer: model.tokenizer, baseModelName: "tiny", seed: 0 })).get("table")!;
    rmSync(dir, { recursive: true });
    const ids = encode("reverse: 1 2");
    const d = model.config.hiddenSize;
    const embeddings = model.lm.weights.tensor(model.lm.embeddingName).data;
    expect(table.shape).toEqual([ids.length + 2, d]);
    ids.forEach((id, j) => expect([...table.data.subarray(j * d, (j + 1) * d)]).toEqual([...embeddings.subarray(id * d, (id + 1) * d)]));
  });

  it("the splice's gradient (a span used twice sums) matches finite differences", async () => {
    // table [4, 3]; rows of 5 positions: soft 0, token, soft 0 again, soft 3, token.
    const index = [0, 0, 0, 3, 0, 1, 0, 2, 1, 0];
    const mask = [1, 0, 1, 1, 0, 1, 0, 1, 1, 0];
    const { maxRelError } = await gradCheck(
      ([table, tokens, idx, m]) => o.where(m, o.gather(table, idx, 0), tokens),
      [{ shape: [4, 3] }, { shape: [2, 5, 3] }, { shape: [2, 5], fixed: { dtype: "int64", data: index } }, { shape: [2, 5, 1], fixed: { dtype: "bool", data: mask } }],
    );
    expect(maxRelError).toBeLessThan(1e-6);
  });
});

describe("{soft:N}{input}{answer} is prompt tuning", () => {
  it("is PEFT's layout (saved as PROMPT_TUNING); its rows are the span then the prompt/completion tokens; the same loss as prompt tuning", async () => {
    const template = parseTemplate("{soft:4}{input}{answer}");
    expect(isPromptTuning(template)).toBe(true);
    expect(isPromptTuning(parseTemplate("{input}{soft:4}= {answer}"))).toBe(false);
    expect(isPromptTuning(parseTemplate("{soft:4}{code:T}{input}{answer}"))).toBe(false);
    expect(isPromptTuning(parseTemplate('{soft:p:"copy"}{input}{answer}'))).toBe(true);
    expect(isPromptTuning(parseTemplate("{soft:4}Review: {input}{answer}"))).toBe(false); // PEFT would not add the text
    const layout = tableLayout(template, encode, new Map());
    const { items } = renderRows({ template, layout }, rows, model.tokenizer, { maxLength: 64 });
    const plain = tokenizeExamples(rows, model.tokenizer, { maxLength: 64 }).items;
    items.forEach((item, i) => {
      expect(item.inputIds.slice(4)).toEqual(plain[i].inputIds);
      expect(item.labels.slice(4)).toEqual(plain[i].labels);
      expect(item.softIndex!.slice(0, 4)).toEqual([0, 1, 2, 3]);
    });
    const d = model.config.hiddenSize;
    const prompt = { shape: [4, d], data: Float32Array.from({ length: 4 * d }, (_, i) => Math.sin(i)) };
    const pad = paddingId(model.tokenizer);
    const viaTemplate = await (await LossEvaluator.create(model.lm, { method: templateMethod, config: { num_virtual_tokens: 4, token_dim: d } as never, params: new Map([["table", prompt]]) }))
      .evaluate(makeBatches(items, { batchSize: 2, padTokenId: pad, padSide: "right" }), new Map([["table", prompt]]));
    const viaPrompt = await (await LossEvaluator.create(model.lm, { method: promptTuning, config: { num_virtual_tokens: 4, token_dim: d } as never, params: new Map([["prompt", prompt]]) }))
      .evaluate(makeBatches(plain, { batchSize: 2, padTokenId: pad, padSide: "right" }), new Map([["prompt", prompt]]));
    expect(viaTemplate.tokens).toBe(viaPrompt.tokens);
    expect(Math.abs(viaTemplate.loss - viaPrompt.loss)).toBeLessThan(1e-5);
  });
});
