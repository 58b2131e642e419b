// `distill` on the tiny example model: teacher outputs are computed once and read back from the cache
// (teacher forward passes counted), an interrupted distillation resumes bit for bit, a cache made with
// another model or prompt is refused, and bad input is refused naming the flag or file before anything is written.
import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { distill, distillView, type DistillOptions } from "../../src/distill/index.js";
import { distillExample, klObjective } from "../../src/distill/objective.js";
import { poolSegments } from "../../src/distill/pooled.js";
import { loadAdapter } from "../../src/peft/adapter.js";
import { SafetensorsFile } from "../../src/formats/safetensors.js";
import { describeAdapter } from "../../src/report/adapter-summary.js";
import { SoftpromptError } from "../../src/util/errors.js";
import { modelDir } from "../helpers/golden.js";
import { loadModel } from "../../src/models/index.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MODEL = join(ROOT, "examples/models/tiny-tasks");
/** 21 tokens: two worked examples, then the tag. */
const TEACHER = "reverse: 5 2 8 = 8 2 5 <|endoftext|> reverse: 1 9 3 4 = 4 3 9 1 <|endoftext|> reverse: ";

const lines = (path: string, n: number) => readFileSync(path, "utf8").split("\n").filter(Boolean).slice(0, n).join("\n") + "\n";

function setup(): { dir: string; data: string; valid: string; base: DistillOptions } {
  const dir = mkdtempSync(join(tmpdir(), "softprompt-distill-"));
  const data = join(dir, "inputs.jsonl");
  const valid = join(dir, "heldout.jsonl");
  writeFileSync(data, lines(join(ROOT, "examples/data/reverse.train.jsonl"), 24));
  writeFileSync(valid, lines(join(ROOT, "examples/data/reverse.valid.jsonl"), 6));
  const base: DistillOptions = { model: MODEL, teacherText: TEACHER, data, valid, numVirtualTokens: 4, steps: 6, batchSize: 8, maxNewTokens: 8, output: join(dir, "out") };
  return { dir, data, valid, base };
}

async function adapterBytes(dir: string): Promise<Buffer> {
  const file = await SafetensorsFile.open(join(dir, "adapter_model.safetensors"));
  try {
    return Buffer.concat(await Promise.all(file.tensorNames().sort().map((n) => file.read(n))));
  } finally {
    await file.close();
  }
}

async function refusal(run: Promise<unknown>): Promise<SoftpromptError> {
  const err = await run.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(SoftpromptError);
  return err as SoftpromptError;
}

describe("distill", () => {
  it("caches the teacher's outputs, resumes bit for bit, and show says the adapter was distilled", async () => {
    const { dir, base } = setup();
    try {
      const whole = await distill({ ...base, output: join(dir, "whole") });
      expect(whole.teacherWork).toMatchObject({ generated: 30, cached: false });
      expect(whole.teacherWork.forwardPasses).toBe(4); // 24 training continuations and 6 held-out ones, 8 rows a pass
      expect(whole.students).toHaveLength(1);
      expect(whole.students[0].tokensPerRequest).toBeLessThan(whole.teacher.tokensPerRequest);

      // Stopped after step 3, then resumed: the same adapter as the run that never stopped, without teacher work.
      const stop = new AbortController();
      const part = await distill({ ...base, output: join(dir, "part"), signal: stop.signal, onStep: (e) => (e.step === 3 ? stop.abort() : undefined) });
      expect(part.interrupted).toBe(true);
      expect(part.teacherWork.generated).toBe(30);
      const resumed = await distill({ ...base, output: join(dir, "part"), resume: true });
      expect(resumed.teacherWork).toEqual({ generated: 0, forwardPasses: 0, cached: true });
      expect((await adapterBytes(join(dir, "part"))).equals(await adapterBytes(join(dir, "whole")))).toBe(true);
      expect(resumed.students[0].greedy).toBe(whole.students[0].greedy);

      const shown = await describeAdapter(join(dir, "whole"));
      expect(shown.distilled).toMatchObject({ teacherPromptTokens: 21, heldOut: 6, greedy: whole.students[0].greedy, top1: whole.students[0].top1 });
      expect(shown.distilled!.teacherPromptSha256).toBe(whole.teacher.promptSha256);
      expect(existsSync(join(dir, "whole", "distill.svg"))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a teacher cache made with another prompt or another model, leaving it as it was", async () => {
    const { dir, base } = setup();
    try {
      await distill({ ...base, steps: 2 });
      const cache = join(base.output, "teacher", "train.safetensors");
      const before = statSync(cache).mtimeMs;
      const otherPrompt = await refusal(distill({ ...base, teacherText: TEACHER.replace("5 2 8 = 8 2 5", "5 2 7 = 7 2 5"), resume: true }));
      expect(otherPrompt.message).toContain("another prompt (--teacher-text)");
      expect(otherPrompt.place).toMatchObject({ file: cache, field: "teacherText" });

      // The same cache beside another model (the golden tiny GPT-2, which also reads digits).
      const elsewhere = join(dir, "elsewhere");
      cpSync(join(base.output, "teacher"), join(elsewhere, "teacher"), { recursive: true });
      const otherModel = await refusal(distill({ ...base, model: modelDir("gpt2"), output: elsewhere }));
      expect(otherModel.message).toContain("another model (--model)");
      expect(statSync(cache).mtimeMs).toBe(before);
      expect(existsSync(join(elsewhere, "adapter_config.json"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses bad input by flag or file before writing anything", async () => {
    const { dir, base } = setup();
    try {
      const cases: [Partial<DistillOptions>, string][] = [
        [{ teacherText: Array(60).fill("3").join(" ") }, "teacherText"],
        [{ numVirtualTokens: 0 }, "numVirtualTokens"],
        [{ numVirtualTokens: 60 }, "numVirtualTokens"],
        [{ sweep: [2, 0] }, "sweep"],
        [{ teacherText: undefined, teacherPrompt: join(dir, "missing.txt") }, "teacherPrompt"],
        [{ resume: true }, "resume"],
        [{ lmWeight: -1 }, "lmWeight"],
        [{ init: "pooled", into: "prefix" }, "init"],
        [{ init: "pooled", numVirtualTokens: 22 }, "numVirtualTokens"],
      ];
      for (const [change, flag] of cases) {
        const err = await refusal(distill({ ...base, ...change }));
        expect(err.place.field, `${JSON.stringify(change)}: ${err.message}`).toBe(flag);
      }
      // The LM term needs every training input's completion: a {"text"} line has none.
      const texts = join(dir, "texts.jsonl");
      writeFileSync(texts, readFileSync(base.data, "utf8") + JSON.stringify({ text: "1 2 3 = " }) + "\n");
      const noAnswer = await refusal(distill({ ...base, data: texts, lmWeight: 1 }));
      expect(noAnswer.message).toContain("--lm-weight");
      expect(noAnswer.place).toMatchObject({ file: texts, line: 25, field: "lmWeight" });
      const longAnswer = join(dir, "long.jsonl");
      writeFileSync(longAnswer, readFileSync(base.data, "utf8") + JSON.stringify({ prompt: "1 2 3 = ", completion: Array(60).fill("3").join(" ") }) + "\n");
      const tooLong = await refusal(distill({ ...base, data: longAnswer, lmWeight: 1 }));
      expect(tooLong.message).toContain("past the model's 64");
      expect(tooLong.place).toMatchObject({ file: longAnswer, line: 25, field: "completion" });
      const empty = join(dir, "empty.jsonl");
      writeFileSync(empty, "");
      const err = await refusal(distill({ ...base, data: empty }));
      expect(err.place.file).toBe(empty);
      expect(existsSync(base.output)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("starts a prompt from pooled segments of the hard prompt, and trains an LM term on the data's completions beside the KL", async () => {
    const { dir, base } = setup();
    try {
      const report = await distill({ ...base, init: "pooled", lmWeight: 0.5, steps: 2 });
      expect(report.students[0].finalLoss).toBeGreaterThan(0);
      const start = await loadAdapter(join(base.output, "teacher", "pooled-k4"));
      const model = await loadModel(MODEL);
      const ids = model.tokenizer.encode(TEACHER, { addSpecialTokens: false });
      const embeddings = model.lm.weights.tensor(model.lm.embeddingName);
      expect(Array.from(start.params.get("prompt")!.data)).toEqual(Array.from(poolSegments(embeddings, ids, 4)));
      // A resume with another weight of the LM term is refused, naming its flag.
      const other = await refusal(distill({ ...base, init: "pooled", lmWeight: 1, steps: 4, resume: true }));
      expect(other.message).toContain("--lm-weight");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("with --into both, trains per K a prefix and the prompt of the same bytes, side by side in the report and chart", async () => {
    const { dir, base } = setup();
    try {
      const report = await distill({ ...base, into: "both", numVirtualTokens: 2, steps: 2 });
      // The tiny model: 2 prefix tokens × 2 layers × keys and values × 32 = 256 floats = 4 prompt vectors of 64.
      expect(report.students.map((s) => [s.into, s.numVirtualTokens, s.output])).toEqual([
        ["prefix", 2, join(base.output, "prefix-k2")],
        ["prompt", 4, join(base.output, "prompt-k4")],
      ]);
      const [prefix, prompt] = await Promise.all(report.students.map((s) => adapterBytes(s.output)));
      expect(prefix.length).toBe(prompt.length);
      const chart = readFileSync(report.chart, "utf8");
      expect(chart).toContain("adapter size (KiB)");
      expect(chart).toContain("prefix: greedy exact match");
      expect(distillView(report)).toMatch(/prefix K=2[\s\S]*prompt K=4/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("with --hidden-weight, keeps the teacher's final hidden states in its training cache and resumes from them", async () => {
    const { dir, base } = setup();
    try {
      const options = { ...base, into: "prefix" as const, hiddenWeight: 2 };
      const stop = new AbortController();
      const part = await distill({ ...options, signal: stop.signal, onStep: (e) => (e.step === 3 ? stop.abort() : undefined) });
      expect(part.interrupted).toBe(true);
      const train = await SafetensorsFile.open(join(base.output, "teacher", "train.safetensors"));
      const held = await SafetensorsFile.open(join(base.output, "teacher", "heldout.safetensors"));
      try {
        expect(train.info("hidden").shape).toEqual([train.info("top_logp").shape[0], 64]); // one hidden state per teacher position
        expect(held.has("hidden")).toBe(false); // agreement is measured on distributions alone
      } finally {
        await Promise.all([train.close(), held.close()]);
      }
      const resumed = await distill({ ...options, resume: true });
      expect(resumed.teacherWork.cached).toBe(true);
      expect(resumed.students[0].steps).toBe(base.steps);
      // Without the term, the cached teacher outputs are not the ones asked for: refused, naming the flag.
      expect((await refusal(distill({ ...options, hiddenWeight: 0, resume: true }))).message).toContain("--hidden-weight");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("pools each of K near-equal segments into the mean of its embeddings", () => {
    const embeddings = { data: Float32Array.from([0, 0, 2, 4, 4, 8, 6, 6]), shape: [4, 2] };
    // 5 tokens into 2 segments: [0, 2) and [2, 5).
    const pooled = Array.from(poolSegments(embeddings, [1, 2, 3, 0, 1], 2));
    [3, 6, (6 + 0 + 2) / 3, (6 + 0 + 4) / 3].forEach((want, i) => expect(pooled[i]).toBeCloseTo(want, 6));
    expect(() => poolSegments(embeddings, [1, 2], 3)).toThrow(/each segment needs a token/);
  });

  it("feeds the LM term's completion rows their weight, and the KL only the teacher's rows", () => {
    const teacherRow = { input: [3, 4], continuation: [5, 0], topIndices: Int32Array.from([5, 4, 0, 1]), topLogp: new Float32Array(4), restLogp: new Float32Array(2) };
    const completion = { inputIds: [3, 4, 6, 7, 0], labels: [-100, -100, 6, 7, 0] };
    const objective = klObjective({ k: 2, vocabSize: 17, rows: [teacherRow] }, {}, { rows: [completion], weight: 0.25 });
    const rows = [distillExample(teacherRow), completion];
    const batch = { inputIds: Int32Array.from([3, 4, 5, 0, 0, 3, 4, 6, 7, 0]), attentionMask: Int32Array.from([1, 1, 1, 1, 0, 1, 1, 1, 1, 1]), labels: Int32Array.from([-100, -100, 5, 0, -100, -100, -100, 6, 7, 0]), batchSize: 2, seqLen: 5, items: rows };
    const feeds = objective.feeds(batch, { numVirtual: 2, virtualAs: "embeds" } as never);
    expect(Array.from(feeds.is_teacher.data as Float32Array)).toEqual([1, 1, 0, 0, 0]);
    expect(Array.from(feeds.lm_weight.data as Float32Array)).toEqual([0, 0, 0.25, 0.25, 0.25]);
    expect([...(feeds.teacher_top_indices.data as BigInt64Array)].slice(0, 4).map(Number)).toEqual([5, 4, 0, 1]);
  });

  it("trains only on rows made from the teacher's outputs", () => {
    const objective = klObjective({ k: 2, vocabSize: 17, rows: [{ input: [3, 4], continuation: [5, 0], topIndices: Int32Array.from([5, 4, 0, 1]), topLogp: new Float32Array(4), restLogp: new Float32Array(2) }] });
    const batch = { inputIds: Int32Array.from([3, 4, 6, 0]), attentionMask: Int32Array.from([1, 1, 1, 1]), labels: Int32Array.from([-100, -100, 6, 0]), batchSize: 1, seqLen: 4 };
    expect(() => objective.feeds(batch, { numVirtual: 2, virtualAs: "embeds" } as never)).toThrow(/not one of the teacher's continuations/);
    const known = { ...batch, inputIds: Int32Array.from([3, 4, 5, 0]), labels: Int32Array.from([-100, -100, 5, 0]) };
    const feeds = objective.feeds(known, { numVirtual: 2, virtualAs: "embeds" } as never);
    expect([...(feeds.teacher_top_indices.data as BigInt64Array)].map(Number)).toEqual([5, 4, 0, 1]);
    expect(feeds.teacher_rest.dims).toEqual([2, 17]);
  });

  it("the hidden-state term needs teacher rows kept with their hidden states, and feeds them position by position", () => {
    const row = { input: [3, 4], continuation: [5, 0], topIndices: Int32Array.from([5, 4, 0, 1]), topLogp: new Float32Array(4), restLogp: new Float32Array(2) };
    expect(() => klObjective({ k: 2, vocabSize: 17, rows: [row] }, {}, undefined, 4)).toThrow(/needs the teacher's hidden states/);
    const hidden = Float32Array.from([1, 2, 3, 4, 5, 6]); // 2 positions of 3
    const objective = klObjective({ k: 2, vocabSize: 17, rows: [{ ...row, hidden }] }, {}, undefined, 4);
    expect(objective.settings).toMatchObject({ hiddenWeight: 4 });
    const batch = { inputIds: Int32Array.from([3, 4, 5, 0]), attentionMask: Int32Array.from([1, 1, 1, 1]), labels: Int32Array.from([-100, -100, 5, 0]), batchSize: 1, seqLen: 4 };
    const feeds = objective.feeds(batch, { numVirtual: 2, virtualAs: "embeds" } as never);
    expect(feeds.teacher_hidden.dims).toEqual([2, 3]);
    expect(Array.from(feeds.teacher_hidden.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
  });
});
