// annotate → review (in the file or interactively) → train --feedback, on the tiny example model:
// answers are the model's own, resumes keep verdicts and answer only what is missing, a review whose
// inputs no longer match the data is refused naming the file, line and field, and nothing half-written
// is left behind. Negatives are never trained as positives: they need --unlikelihood-weight, else they are counted and left out.
import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { annotate } from "../../src/feedback/annotate.js";
import { parseReview, writeReview } from "../../src/feedback/review.js";
import { feedbackRows } from "../../src/feedback/rows.js";
import { dataCheck, generateText, show, train } from "../../src/workflows.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const BIN = fileURLToPath(new URL("../../bin/softprompt.js", import.meta.url));
const cli = (args: string[]) =>
  new Promise<{ code: number; stdout: string }>((resolve) =>
    execFile(process.execPath, [BIN, ...args], (err, stdout) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout })),
  );
const work = mkdtempSync(join(tmpdir(), "softprompt-annotate-"));
const INPUTS = ["reverse: 3 1 4 = ", "sort: 9 2 5 = ", "copy: 7 7 1 = ", "increment: 1 2 3 = "];
const data = join(work, "inputs.jsonl");
writeFileSync(data, INPUTS.map((prompt) => JSON.stringify({ text: prompt })).join("\n") + "\n");
const review = join(work, "review.jsonl");
const read = () => parseReview(readFileSync(review, "utf8"), review);

/** A terminal whose keyboard types `lines`, and whose screen is kept. */
function terminal(lines: string[]) {
  let screen = "";
  const output = new Writable({ write: (chunk, _enc, done) => ((screen += String(chunk)), done()) });
  return { io: { input: Readable.from(lines.map((l) => l + "\n")), output }, screen: () => screen };
}

describe("annotate and train --feedback", () => {
  it("writes every input with the model's answer and an empty verdict, then resumes without answering again", async () => {
    const first = await annotate({ model: MODEL, data, output: review, batchSize: 3 });
    expect(first).toMatchObject({ items: 4, generated: 4, counts: { good: 0, bad: 0, corrected: 0, pending: 4 } });
    const alone = await generateText({ model: MODEL, inputs: INPUTS, maxNewTokens: 32 });
    expect(read().map((it) => [it.line, it.prompt, it.answer, it.verdict])).toEqual(INPUTS.map((p, i) => [i + 1, p, alone[i].text, ""]));
    // A verdict written by hand survives a rerun; a lost item is answered again.
    const items = read();
    items[0].verdict = "good";
    await writeReview(review, items.slice(0, 3));
    const again = await annotate({ model: MODEL, data, output: review });
    expect(again).toMatchObject({ items: 4, generated: 1, counts: { good: 1, pending: 3 } });
    expect(readdirSync(work).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("reviews interactively one answer at a time, saves each verdict and resumes where it stopped", async () => {
    const t = terminal(["x", "e", "", "4 2 5", "q"]);
    const r = await annotate({ model: MODEL, data, output: review, interactive: t.io });
    expect(r).toMatchObject({ generated: 0, quit: true, counts: { good: 1, bad: 1, corrected: 1, pending: 2 } });
    expect(t.screen()).toContain('"x" is not a key');
    expect(t.screen()).toContain("the right answer cannot be empty");
    expect(read()[1]).toMatchObject({ verdict: "bad", correction: "4 2 5" });
    // The next session starts at the first unreviewed answer (input line 3).
    const t2 = terminal(["s", "b"]);
    const r2 = await annotate({ model: MODEL, data, output: review, interactive: t2.io });
    expect(r2).toMatchObject({ quit: false, counts: { good: 1, bad: 2, pending: 1 } });
    expect(t2.screen()).toMatch(/\(1 of 2\) input line 3/);
    expect(read().map((it) => it.verdict)).toEqual(["good", "bad", "", "bad"]);
  });

  it("refuses a review whose inputs no longer match the data, naming the review's line and field, and leaves it as it was", async () => {
    const before = readFileSync(review, "utf8");
    const changed = join(work, "changed.jsonl");
    writeFileSync(changed, [INPUTS[0], "sort: 1 1 1 = ", INPUTS[2], INPUTS[3]].map((text) => JSON.stringify({ text })).join("\n") + "\n");
    await expect(annotate({ model: MODEL, data: changed, output: review })).rejects.toThrow(
      `${review}:2, field "prompt": the input no longer matches ${changed}:2 (review has "sort: 9 2 5 = ", the data "sort: 1 1 1 = ")`,
    );
    const shorter = join(work, "shorter.jsonl");
    writeFileSync(shorter, JSON.stringify({ text: INPUTS[0] }) + "\n");
    await expect(annotate({ model: MODEL, data: shorter, output: review })).rejects.toThrow(`${review}:2, field "line": reviews input line 2, but ${shorter} has no input there`);
    const chat = join(work, "chat.jsonl");
    writeFileSync(chat, JSON.stringify({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "yo" }] }) + "\n");
    await expect(annotate({ model: MODEL, data: chat, output: join(work, "other.jsonl") })).rejects.toThrow(`${chat}:1, field "messages": annotate takes`);
    expect(readFileSync(review, "utf8")).toBe(before);
    expect(existsSync(join(work, "other.jsonl"))).toBe(false);
  });

  it("turns good answers and corrections into positives and bad answers into negatives", () => {
    const rows = feedbackRows(read(), review);
    expect(rows.positives.map((r) => (r.kind === "prompt" ? [r.prompt, r.completion] : null))).toEqual([
      [INPUTS[0], read()[0].answer],
      [INPUTS[1], "4 2 5"],
    ]);
    expect(rows.negatives.map((r) => r.fields)).toEqual([
      { prompt: INPUTS[1], completion: read()[1].answer, negative: true },
      { prompt: INPUTS[3], completion: read()[3].answer, negative: true },
    ]);
    expect(rows.pending).toBe(1);
  });

  it("data check reads a review file as the rows it gives: how positives balance against negatives", async () => {
    expect((await dataCheck({ file: review })).balance).toEqual({ positives: 2, negatives: 2, pairs: 0, suggestedWeights: { positive: 1, negative: 1 } });
  });

  it("train --feedback adds the positives, and the negatives only with the unlikelihood penalty (else counted and left out); the review is fingerprinted", async () => {
    const trainData = join(work, "train.jsonl");
    writeFileSync(trainData, ["1 2 = ", "5 4 = "].map((p) => JSON.stringify({ prompt: p, completion: p.slice(0, 3).split(" ").reverse().join(" ") })).join("\n") + "\n");
    const logs: string[] = [];
    const out = join(work, "run");
    const r = await train({ model: MODEL, data: trainData, valid: trainData, feedback: review, output: out, steps: 2, numVirtualTokens: 2, onLog: (l) => logs.push(l) });
    expect(r.trainExamples).toBe(2 + 2);
    expect(logs.join("\n")).toContain(`--feedback ${review}: 2 positive rows from the review; 2 bad answers (negatives) are left out: set --unlikelihood-weight to train them; 1 answers not reviewed yet are left out`);
    expect(Object.keys((await show(out)).dataFingerprints ?? {})).toContain("--feedback");
    // With the penalty on, the bad answers are trained as negatives too.
    const withNegatives = await train({ model: MODEL, data: trainData, valid: trainData, feedback: review, output: join(work, "run-negatives"), steps: 2, numVirtualTokens: 2, unlikelihoodWeight: 1, onLog: (l) => logs.push(l) });
    expect(withNegatives.trainExamples).toBe(2 + 2 + 2);
    expect(logs.join("\n")).toContain("2 negative rows (bad answers, made less likely)");
    const unreviewed = join(work, "unreviewed.jsonl");
    await writeReview(unreviewed, read().map((it) => ({ ...it, verdict: "", correction: null })));
    await expect(train({ model: MODEL, data: trainData, feedback: unreviewed, output: join(work, "run2"), steps: 1 })).rejects.toThrow(`${unreviewed}, field "verdict": no reviewed answers yet`);
  });

  it("the CLI prints a bad review file as one JSON error naming its file, line and field", async () => {
    const bad = join(work, "bad-review.jsonl");
    writeFileSync(bad, readFileSync(review, "utf8").replace('"verdict":"good"', '"verdict":"fine"'));
    const r = await cli(["annotate", "--model", MODEL, "--data", data, "--output", bad, "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error).toMatchObject({ code: "data", file: bad, line: 1, field: "verdict" });
  });
});
