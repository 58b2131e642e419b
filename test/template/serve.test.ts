// A template adapter served: registry add checks it, each completion renders through its template
// with the request's `codes`, and the answer is what `generate --code` gives for the same input.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateText, train } from "../../src/workflows.js";
import { type RunningServer, addAdapter, startServer } from "../../src/serve/index.js";

const MODEL = fileURLToPath(new URL("../../examples/models/tiny-tasks", import.meta.url));
const data = (name: string) => fileURLToPath(new URL(`../../examples/data/${name}.jsonl`, import.meta.url));
const work = mkdtempSync(join(tmpdir(), "softprompt-template-serve-"));
const run = join(work, "run");
let server: RunningServer;

beforeAll(async () => {
  const tagged = (task: string) => readFileSync(data(`${task}.train`), "utf8").trim().split("\n").slice(0, 200).map((l) => JSON.stringify({ ...JSON.parse(l), TASK: task }));
  const sort = tagged("sort");
  writeFileSync(join(work, "train.jsonl"), tagged("reverse").flatMap((r, i) => [r, sort[i]]).join("\n") + "\n");
  writeFileSync(join(work, "t.tmpl"), "{code:TASK:4}{input}{answer}");
  await train({ model: MODEL, data: join(work, "train.jsonl"), output: run, template: join(work, "t.tmpl"), steps: 120, evalEvery: 1000, lr: 0.1, seed: 1 });
  await addAdapter({ root: join(work, "registry"), name: "tasks", source: run, model: MODEL });
  server = await startServer({ model: MODEL, adapters: join(work, "registry"), log: () => {} });
});
afterAll(async () => {
  await server?.close();
  rmSync(work, { recursive: true, force: true });
});

const post = (path: string, body: object) =>
  fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, json: (await r.json()) as Record<string, any> }));

describe("serving a template adapter", () => {
  it.each(["reverse", "sort"])("codes {TASK: %s}: the completion generate --code gives", async (task) => {
    const input = "3 1 4 2 = ";
    const [want] = await generateText({ model: MODEL, adapter: run, inputs: [input], codes: [`TASK=${task}`], maxNewTokens: 8 });
    const { status, json } = await post("/v1/completions", { model: "tasks", prompt: input, codes: { TASK: task }, temperature: 0, max_tokens: 8 });
    expect(status).toBe(200);
    expect(json.choices[0].text).toBe(want.text);
  });

  it("a chat renders as a chat row: its last user turn fills {input}", async () => {
    const [want] = await generateText({ model: MODEL, adapter: run, inputs: ["3 1 4 2 = "], codes: ["TASK=sort"], maxNewTokens: 8 });
    const { status, json } = await post("/v1/chat/completions", { model: "tasks", messages: [{ role: "user", content: "3 1 4 2 = " }], codes: { TASK: "sort" }, temperature: 0, max_tokens: 8 });
    expect(status).toBe(200);
    expect(json.choices[0].message.content).toBe(want.text);
  });

  it("an unlearned or missing code, token-id prompts and classify are 400s naming what is wrong", async () => {
    const copy = await post("/v1/completions", { model: "tasks", prompt: "3 1 = ", codes: { TASK: "copy" }, max_tokens: 4 });
    expect([copy.status, copy.json.error.param]).toEqual([400, "codes"]);
    expect(copy.json.error.message).toMatch(/code TASK has no learned value "copy"; learned: "reverse", "sort"/);
    const none = await post("/v1/completions", { model: "tasks", prompt: "3 1 = ", max_tokens: 4 });
    expect([none.status, none.json.error.param]).toEqual([400, "TASK"]);
    const ids = await post("/v1/completions", { model: "tasks", prompt: [3, 1], codes: { TASK: "sort" }, max_tokens: 4 });
    expect([ids.status, ids.json.error.param]).toEqual([400, "prompt"]);
    const base = await post("/v1/completions", { model: "base", prompt: "3 1 = ", codes: { TASK: "sort" }, max_tokens: 4 });
    expect([base.status, base.json.error.param]).toEqual([400, "codes"]);
    const classify = await post("/v1/classify", { model: "tasks", input: "3 1 = ", choices: ["1 3", "3 1"] });
    expect(classify.status).toBe(400);
    expect(classify.json.error.message).toMatch(/template adapter: classify does not render templates/);
  });
});
