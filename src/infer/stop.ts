import { fail } from "../util/errors.js";

export interface StopCheck {
  /** Whether a stop string occurs in the text. */
  stopped: boolean;
  /** The text cut just before the earliest stop string, or all of it when none occurs. */
  text: string;
  /**
   * How many leading characters of `text` are final: no later token can turn them into part of a stop
   * string. A streaming printer emits up to here and holds the rest back (all of `text` once stopped).
   */
  safeLength: number;
}

/**
 * Stop strings for a streaming decode, matched on the whole decoded text so far (re-decoding the whole
 * sequence each step lets a stop string span tokens, and lets the tokenizer fix up partial characters).
 * The max-tokens limit is the caller's.
 */
export class StopMatcher {
  private readonly stops: string[];

  constructor(stops: string[]) {
    if (stops.some((s) => s.length === 0)) fail("usage", "a stop string must not be empty", { field: "stop" });
    this.stops = [...stops];
  }

  check(text: string): StopCheck {
    let cut = -1;
    for (const stop of this.stops) {
      const at = text.indexOf(stop);
      if (at !== -1 && (cut === -1 || at < cut)) cut = at;
    }
    if (cut !== -1) return { stopped: true, text: text.slice(0, cut), safeLength: cut };
    return { stopped: false, text, safeLength: text.length - this.pendingLength(text) };
  }

  /** Length of the longest end of `text` that is the start of some stop string. */
  private pendingLength(text: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > longest; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}
