// The SoftpromptError a call throws, so a test can check its message and place; anything else fails the test.
import { expect } from "vitest";
import { SoftpromptError } from "../../src/util/errors.js";

export function errorOf(run: () => unknown): SoftpromptError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(SoftpromptError);
    return err as SoftpromptError;
  }
  throw new Error("expected a SoftpromptError");
}
