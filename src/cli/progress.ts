// A progress bar for training: steps, loss, tokens/s and ETA, on stderr so stdout stays clean.
import cliProgress from "cli-progress";
import type { TrainEvent } from "../train/trainer.js";

export function progressReporter() {
  const bar = new cliProgress.SingleBar(
    {
      format: "step {value}/{total} |{bar}| loss {loss} | valid {valid} | {tps} tok/s | eta {eta_formatted}",
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    step(e: TrainEvent) {
      const payload = { loss: e.loss.toFixed(4), valid: e.validLoss?.toFixed(4) ?? "-", tps: Math.round(e.tokensPerSecond) };
      if (!started) {
        bar.start(e.totalSteps, e.step - 1, { ...payload, valid: "-" });
        started = true;
      }
      bar.update(e.step, e.validLoss === undefined ? { loss: payload.loss, tps: payload.tps } : payload);
    },
    log(line: string) {
      if (started) bar.stop();
      started = false;
      process.stderr.write(line + "\n");
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
