// The server's prompt cache is bounded in bytes: least recently used soft prompts' keys/values go first,
// and a prompt computed again after eviction gives the same state.
import { describe, expect, it } from "vitest";
import { PromptCache } from "../../src/infer/kv-cache.js";
import { loadGoldenModel } from "../helpers/golden.js";
import { randomPrompt } from "../infer/prompts.js";

describe("PromptCache with maxBytes", () => {
  it("evicts least recently used states beyond the byte bound, never the one just computed", async () => {
    const lm = await loadGoldenModel("llama");
    const d = lm.config.hiddenSize;
    const [a, b, c] = [0, 1, 2].map((k) => randomPrompt(`bound-${k}`, 4, d, 300 + k));
    const probe = new PromptCache(lm);
    await probe.get(a);
    const oneState = probe.bytes;
    expect(oneState).toBeGreaterThan(0);

    // Room for two states: the third evicts the least recently used (b, since a was used again).
    const cache = new PromptCache(lm, 64, Math.floor(oneState * 2.5));
    const stateA = await cache.get(a);
    await cache.get(b);
    await cache.get(a);
    await cache.get(c);
    expect(cache.size).toBe(2);
    expect(cache.bytes).toBeLessThanOrEqual(oneState * 2.5);
    expect(await cache.get(a)).toBe(stateA); // still cached: the very same state
    // A bound smaller than one state still keeps the state being used.
    const tiny = new PromptCache(lm, 64, 1);
    await tiny.get(a);
    await tiny.get(b);
    expect(tiny.size).toBe(1);
    expect((await tiny.get(a)).layers[0].key).toEqual(stateA.layers[0].key);
  });
});
