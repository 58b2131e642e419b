// The scheduler's loop: a request the server has seen but not yet submitted (still being read and checked)
// joins the same step as the rows already waiting, instead of a later one with a prefill of its own.
import { describe, expect, it } from "vitest";
import { GenerationEngine } from "../../src/infer/engine.js";
import { type RowEvents, Scheduler } from "../../src/serve/scheduler.js";
import { loadGoldenModel } from "../helpers/golden.js";

function collect(): { events: RowEvents; done: Promise<number[]> } {
  let resolve!: (ids: number[]) => void;
  let reject!: (err: unknown) => void;
  const done = new Promise<number[]>((res, rej) => ((resolve = res), (reject = rej)));
  return { events: { onToken: () => {}, onDone: (g) => resolve(g.ids), onError: reject }, done };
}

describe("Scheduler", () => {
  it("waits for a request that has arrived but not yet submitted, so both rows start in one step", async () => {
    const engine = new GenerationEngine(await loadGoldenModel("gpt2"));
    const joined: number[] = [];
    const step = engine.step.bind(engine);
    engine.step = () => {
      joined.push(engine.size);
      return step();
    };
    const scheduler = new Scheduler(engine, { maxBatchSize: 8, maxQueue: 8 });
    const second = {};
    scheduler.arrive(second);
    const a = collect();
    scheduler.submit({ inputIds: [1, 2, 3], maxNewTokens: 3 }, a.events);
    // The second request submits a few milliseconds later, as a body still being read would.
    const b = collect();
    setTimeout(() => {
      scheduler.submit({ inputIds: [4, 5], maxNewTokens: 3 }, b.events);
      scheduler.arrived(second);
    }, 5);
    await Promise.all([a.done, b.done]);
    expect(joined[0]).toBe(2);
    await scheduler.drained();
  });
});
