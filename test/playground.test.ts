// The playground page at / in headless Chromium (Debian's, driven by playwright-core): it lists the base model
// and the adapters, streams one answer per pane — two adapters side by side, or one, or the bare model — each
// equal to the library's answer for the same request, and shows the server's error when a request is refused.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { startServer, addAdapter, type RunningServer } from "../src/serve/index.js";
import { generateText, train } from "../src/workflows.js";

const CHROMIUM = "/usr/bin/chromium";
const MODEL = fileURLToPath(new URL("../examples/models/tiny-tasks", import.meta.url));
const data = (task: string, split: string) => fileURLToPath(new URL(`../examples/data/${task}.${split}.jsonl`, import.meta.url));
const INPUT = "3 1 4 1 5 = ";
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`playground test skipped: no Chromium at ${CHROMIUM} (.ci/run installs Debian's chromium where it can)`);

describe.skipIf(!hasChromium)("the playground page", () => {
  const work = mkdtempSync(join(tmpdir(), "softprompt-playground-"));
  const adapterDirs: Record<string, string> = {};
  let server: RunningServer;
  let browser: BrowserContext;
  let page: Page;

  /** What the library answers for the playground's request (greedy, 32 tokens at most). */
  const alone = async (adapter?: string) => (await generateText({ model: MODEL, adapter, inputs: [INPUT], maxNewTokens: 32, onWarning: () => {} }))[0].text;

  beforeAll(async () => {
    for (const task of ["reverse", "sort"]) {
      adapterDirs[task] = join(work, task);
      await train({ model: MODEL, data: data(task, "train"), valid: data(task, "valid"), output: adapterDirs[task], numVirtualTokens: 20, steps: 200, lr: 0.1, batchSize: 8 });
      await addAdapter({ root: join(work, "registry"), name: task, source: adapterDirs[task] });
    }
    server = await startServer({ model: MODEL, adapters: join(work, "registry"), rescanMs: 0, log: () => {} });
    browser = await chromium.launchPersistentContext(join(work, "chromium-profile"), {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      viewport: { width: 1100, height: 720 },
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    await page.goto(`${server.url}/`);
    await page.waitForSelector("body.ready", { timeout: 20_000 });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    rmSync(work, { recursive: true, force: true });
  });

  const paneText = (pane: "a" | "b") => page.locator(`#pane-${pane} .output`).textContent();
  const paneState = (pane: "a" | "b") => page.locator(`#pane-${pane}`).getAttribute("data-state");
  /** Run and wait until every pane that is on has finished (or failed). */
  async function runAndWait(panes: ("a" | "b")[]) {
    await page.click("#run");
    for (const p of panes) await page.waitForFunction((id) => ["done", "failed"].includes(document.querySelector(`#pane-${id}`)?.getAttribute("data-state") ?? ""), p, { timeout: 30_000 });
  }

  it("lists the base model and every adapter, and starts with two adapters side by side", async () => {
    expect(await page.locator("#base-model").textContent()).toBe("tiny-tasks");
    const options = await page.locator("#model-b option").evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
    expect(options).toEqual(["", "tiny-tasks", "reverse", "sort"]);
    expect(await page.inputValue("#model-a")).toBe("reverse");
    expect(await page.inputValue("#model-b")).toBe("sort");
  });

  it("streams the same input through two adapters side by side, each answer what the library gives alone", async () => {
    // Every text change of a pane, so the test sees the answer arrive in pieces, not at once.
    await page.evaluate(() => {
      const w = window as unknown as { updates: Record<string, number> };
      w.updates = { a: 0, b: 0 };
      for (const id of ["a", "b"]) new MutationObserver(() => w.updates[id]++).observe(document.querySelector(`#pane-${id} .output`)!, { childList: true, characterData: true, subtree: true });
    });
    await page.fill("#input", INPUT);
    await runAndWait(["a", "b"]);
    expect(await paneState("a")).toBe("done");
    expect(await paneState("b")).toBe("done");
    const [reverse, sort] = [await alone(adapterDirs.reverse), await alone(adapterDirs.sort)];
    expect(await paneText("a")).toBe(reverse);
    expect(await paneText("b")).toBe(sort);
    expect(reverse).not.toBe(sort);
    const updates = await page.evaluate(() => (window as unknown as { updates: Record<string, number> }).updates);
    // One reset, then one update per streamed piece: a 5-token answer arrives in more than one.
    expect(updates.a).toBeGreaterThan(2);
    expect(await page.locator("#pane-a .stats").textContent()).toMatch(/^\d+ tokens · first token \d+ ms · \d+\.\d\d s · (stop|length)$/);
    // PLAYGROUND_SCREENSHOT=/some/file.png keeps a picture of the page to look at.
    await page.screenshot({ path: process.env.PLAYGROUND_SCREENSHOT ?? join(work, "playground.png") });
  });

  it("answers with one pane and the bare model, the other off", async () => {
    await page.selectOption("#model-a", "tiny-tasks");
    await page.selectOption("#model-b", "");
    await page.evaluate(() => {
      document.querySelector("#pane-b .output")!.textContent = "";
      document.querySelector("#pane-b")!.removeAttribute("data-state");
    });
    await runAndWait(["a"]);
    expect(await paneText("a")).toBe(await alone());
    expect(await paneState("b")).toBeNull();
    expect(await page.locator("#pane-b").getAttribute("class")).toContain("off");
  });

  it("shows the server's error when a request is refused, and the next run works", async () => {
    await page.fill("#max-tokens", "100000");
    await runAndWait(["a"]);
    expect(await paneState("a")).toBe("failed");
    expect(await page.locator("#pane-a .stats").textContent()).toMatch(/max_tokens/);
    await page.fill("#max-tokens", "32");
    await runAndWait(["a"]);
    expect(await paneState("a")).toBe("done");
  });
});
