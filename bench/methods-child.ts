// Child process of the methods benchmark: trains one method on one model shape with the real trainer, one step
// at a time: after each step it prints {"step", "seconds", "loss"} and, but after the last, waits for a line on
// stdin before the next, so bench/methods.ts can run PEFT's step in between. Prints a "ready" line first and a
// "done" line last.
import { readSync, writeSync } from "node:fs";
import { type BenchMethod, ourTrainer } from "./methods.js";
import { peakRssMb, trainStepSeconds } from "./common.js";

const [shape, method, steps] = [process.argv[2], process.argv[3] as BenchMethod, Number(process.argv[4])];
const say = (o: object) => writeSync(1, JSON.stringify(o) + "\n");

/** Blocks until a line arrives on stdin (the event loop waits too: this process does nothing else). */
function waitForLine(): void {
  const byte = Buffer.alloc(1);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    let n: number;
    try {
      n = readSync(0, byte, 0, 1, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      Atomics.wait(pause, 0, 0, 2);
      continue;
    }
    if (n === 0) process.exit(0); // the parent went away
    if (byte[0] === 0x0a) return;
  }
}

const { lm, items, settings, trainableParams, textTokens } = await ourTrainer(shape, method);
say({ ready: true, trainable_params: trainableParams, text_tokens: textTokens, settings });
await trainStepSeconds(lm, items, settings, steps, ({ step, seconds, loss }) => {
  say({ step, seconds, loss });
  if (step < steps) waitForLine();
});
say({ done: true, peak_rss_mb: peakRssMb() });
