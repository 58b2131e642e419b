/**
 * Errors as data: every failure the user can cause carries a `code` to branch on,
 * and the place it came from (file, line, field, op), so the message can say exactly what to fix.
 */
export type ErrorCode =
  | "shape" // a graph op got inputs whose shapes do not fit
  | "dtype" // a graph op got inputs whose dtypes do not fit
  | "grad" // a gradient was asked for something the loss does not depend on
  | "nonfinite" // NaN or Inf in a loss or a gradient
  | "runtime" // ONNX Runtime refused or failed
  | "file" // a file is missing, unreadable or malformed
  | "safetensors" // a safetensors file is corrupt or hostile
  | "config" // a config (model, adapter, training) is invalid or unsupported
  | "weights" // a tensor is missing or has the wrong shape for the config
  | "hub" // a hub id could not be resolved or downloaded
  | "data" // a dataset line or field is malformed
  | "tokenizer" // a tokenizer file is malformed or a text cannot be encoded
  | "adapter" // an adapter does not fit the model or is corrupt
  | "usage"; // the CLI or API was called wrongly

export interface ErrorPlace {
  file?: string;
  line?: number;
  field?: string;
  op?: string;
  tensor?: string;
}

export class SoftpromptError extends Error {
  readonly code: ErrorCode;
  readonly place: ErrorPlace;
  /** The message without its place, so a caller can say it of another place. */
  readonly reason: string;

  constructor(code: ErrorCode, message: string, place: ErrorPlace = {}, options?: { cause?: unknown }) {
    super(formatMessage(message, place), options);
    this.name = "SoftpromptError";
    this.code = code;
    this.place = place;
    this.reason = message;
  }
}

function formatMessage(message: string, place: ErrorPlace): string {
  const where: string[] = [];
  if (place.file !== undefined) where.push(place.line !== undefined ? `${place.file}:${place.line}` : place.file);
  if (place.tensor !== undefined) where.push(`tensor "${place.tensor}"`);
  if (place.field !== undefined) where.push(`field "${place.field}"`);
  if (place.op !== undefined) where.push(`op ${place.op}`);
  return where.length > 0 ? `${where.join(", ")}: ${message}` : message;
}

/** Shorthand for throwing: `fail("data", "expected an object", { file, line })`. */
export function fail(code: ErrorCode, message: string, place: ErrorPlace = {}, cause?: unknown): never {
  throw new SoftpromptError(code, message, place, cause === undefined ? undefined : { cause });
}
