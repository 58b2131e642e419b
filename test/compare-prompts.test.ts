// compare-prompts on the tiny example model: no prompt, the task's tag as the hard prompt, k shots and a
// soft prompt on the same held-out rows, with paired bootstrap intervals, tokens per request and the
// JSON and HTML it writes; the HTML opened in headless Chromium (Debian's, via playwright-core): every
// plot drawn and every number in the table the JSON's. Prefill times are reported, never asserted.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser } from "playwright-core";
import { bootstrap, comparePrompts, type ComparePromptsReport } from "../src/compare-prompts.js";
import { comparePromptsView } from "../src/report/compare-prompts.js";

const MODEL = fileURLToPath(new URL("../examples/models/tiny-tasks", import.meta.url));
const TRAIN = fileURLToPath(new URL("../examples/data/reverse.train.jsonl", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`compare-prompts report test skipped: no Chromium at ${CHROMIUM} (.ci/run installs Debian's chromium where it can)`);

const work = mkdtempSync(join(tmpdir(), "softprompt-compare-prompts-"));
const valid = join(work, "valid.jsonl");
// 20 held-out rows keep the test fast; the README's run uses all 100.
writeFileSync(valid, readFileSync(fileURLToPath(new URL("../examples/data/reverse.valid.jsonl", import.meta.url)), "utf8").split("\n").slice(0, 20).join("\n") + "\n");
const template = join(work, "mixed.tmpl");
writeFileSync(template, "{soft:4}reverse: {input}{answer}");
let report: ComparePromptsReport;

beforeAll(async () => {
  report = await comparePrompts({ model: MODEL, data: TRAIN, valid, output: join(work, "out"), instruction: "reverse: ", shots: 2, template, soft: { steps: 100, numVirtualTokens: 8 } });
}, 120_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("compare-prompts", () => {
  it("measures each way on the same rows, with intervals around each value", () => {
    expect(report.ways.map((w) => w.name)).toEqual(["no prompt", "hard prompt", "2-shot", "soft prompt", "mixed template"]);
    expect(report.examples).toBe(20);
    for (const w of report.ways) {
      for (const i of [w.exactMatch, w.loss]) expect(i.low <= i.value && i.value <= i.high).toBe(true);
      expect(w.prefillMsPerRequest).toBeGreaterThan(0);
    }
    // The model knows the tag: the hard prompt answers every row, the bare model few.
    const [none, hard, shots, soft, mixed] = report.ways;
    expect(hard.exactMatch.value).toBe(1);
    expect(none.exactMatch.value).toBeLessThan(0.5);
    // Tokens per request: the tag is one token; 8 virtual tokens; two shots of about 14 tokens each.
    expect(hard.tokensPerRequest).toBeCloseTo(none.tokensPerRequest + 1, 9);
    expect(soft.tokensPerRequest).toBeCloseTo(none.tokensPerRequest + 8, 9);
    expect(shots.tokensPerRequest).toBeGreaterThan(hard.tokensPerRequest + 10);
    // The template: 4 soft vectors, the tag and the input (no BOS in this tokenizer).
    expect(mixed.tokensPerRequest).toBeCloseTo(hard.tokensPerRequest + 4, 9);
    expect(report.differences.map((d) => [d.worse, d.better])).toEqual([["no prompt", "hard prompt"], ["hard prompt", "2-shot"], ["2-shot", "soft prompt"], ["soft prompt", "mixed template"]]);
    expect(report.differences[0].exactMatch.low).toBeGreaterThan(0);
    expect(report.verdict).toMatch(/^no prompt < hard prompt < soft prompt at 95% confidence — exact match: (holds|does not hold) \(hard prompt − no prompt /);
    expect(report.leftOut).toEqual([]);
  });

  it("writes the same report as JSON, and prints an aligned table", () => {
    expect(JSON.parse(readFileSync(report.json, "utf8"))).toEqual(report);
    const text = comparePromptsView(report);
    expect(text).toMatch(/\nhard prompt {10}100\.0% {2}\[100\.0%, 100\.0%\]/);
    expect(text).toContain("mixed template ");
  });

  it("bootstraps with a seed: the same draws give the same interval, a constant gives no width", () => {
    const draws = Array.from({ length: 1000 }, (_, r) => Array.from({ length: 4 }, (_, i) => (r * 7 + i * 3) % 4));
    expect(bootstrap(draws, () => 0.5)).toEqual({ value: 0.5, low: 0.5, high: 0.5 });
    const values = [0, 1, 1, 0];
    const i = bootstrap(draws, (idx) => idx.reduce((s, k) => s + values[k], 0) / idx.length);
    expect(i.value).toBe(0.5);
    expect(i.low).toBeLessThanOrEqual(0.5);
    expect(i.high).toBeGreaterThanOrEqual(0.5);
  });

  it("refuses too few resamples, too many shots and rows without an answer, naming the flag or line", async () => {
    const base = { model: MODEL, data: TRAIN, valid, output: join(work, "bad") };
    await expect(comparePrompts({ ...base, resamples: 10 })).rejects.toMatchObject({ code: "usage", place: { field: "--resamples" } });
    await expect(comparePrompts({ ...base, shots: 401 })).rejects.toThrow("401 shots need as many training rows");
    const text = join(work, "text.jsonl");
    writeFileSync(text, JSON.stringify({ prompt: "1 = ", completion: "1" }) + "\n" + JSON.stringify({ text: "3 1" }) + "\n");
    await expect(comparePrompts({ ...base, valid: text })).rejects.toThrow(`${text}:2: compare-prompts needs {"prompt","completion"} rows`);
  });
});

describe.skipIf(!hasChromium)("the compare-prompts HTML report in Chromium", () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
  });
  afterAll(async () => browser?.close());

  it("draws every plot and shows in its table exactly the JSON's numbers", async () => {
    const page = await browser.newPage();
    const requests: string[] = [];
    page.on("request", (r) => requests.push(r.url()));
    await page.goto(`file://${report.html}`);
    const n = report.ways.length;
    // Two bar charts (exact match, loss): a bar and an interval per way, each with a size on screen.
    const charts = await page.locator("svg.interval-bars").evaluateAll((svgs) =>
      svgs.map((svg) => ({
        bars: [...svg.querySelectorAll("rect.bar")].map((r) => (r as SVGGraphicsElement).getBBox().height),
        intervals: [...svg.querySelectorAll("path.interval")].map((p) => (p as SVGGraphicsElement).getBBox().width),
      })),
    );
    expect(charts).toHaveLength(2);
    for (const c of charts) {
      expect(c.bars).toHaveLength(n);
      expect(c.intervals).toHaveLength(n);
      expect(c.intervals.every((w) => w > 0)).toBe(true);
    }
    // Exact-match bars are as tall as their values say (the tallest spans the axis).
    const heights = charts[0].bars;
    const top = Math.max(...report.ways.map((w) => w.exactMatch.high));
    report.ways.forEach((w, i) => expect(heights[i] / Math.max(...heights)).toBeCloseTo(w.exactMatch.value / top, 2));
    // The scatter: one drawn point per way.
    const points = await page.locator("figure svg:not(.interval-bars) circle").evaluateAll((cs) => cs.map((c) => (c as SVGGraphicsElement).getBBox().width));
    expect(points.filter((w) => w > 0).length).toBeGreaterThanOrEqual(n);
    // Every number cell against the JSON at its key, to the digits shown.
    const cells = await page.locator("td[data-key]").evaluateAll((tds) => tds.map((td) => ({ key: td.getAttribute("data-key")!, text: td.textContent! })));
    expect(cells).toHaveLength(8 * n);
    for (const { key, text } of cells) {
      const value = key.split(/[.[\]]+/).filter(Boolean).reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], report) as number;
      const shown = Number(text.replace("%", ""));
      const decimals = text.replace("%", "").split(".")[1]?.length ?? 0;
      expect(Math.abs(shown - (text.endsWith("%") ? 100 * value : value)), `${key}: ${text} vs ${value}`).toBeLessThanOrEqual(0.5 * 10 ** -decimals + 1e-9);
    }
    // Self-contained: nothing but the file itself was requested.
    expect(requests).toEqual([`file://${report.html}`]);
    await page.close();
  });
});
