/**
 * The server's errors and the ONE place that turns any error into an HTTP status and OpenAI's error
 * body, `{"error": {"message", "type", "param", "code"}}`. Library errors (SoftpromptError) map by
 * their code; conditions only a server has (a key, a full queue, a timeout) are ServeErrors; fastify's
 * own (malformed JSON, a body over the limit) carry their status. Anything else is a 500 that names no
 * internals: the server logs it and keeps serving.
 */
import { SoftpromptError, type ErrorCode } from "../util/errors.js";

/** What only a server can refuse, as OpenAI names it (`code` in the body). */
export type ServeErrorCode =
  | "invalid_api_key"
  | "model_not_found"
  | "unknown_parameter"
  | "unsupported_parameter"
  | "context_length_exceeded"
  | "rate_limit_exceeded"
  | "request_timeout"
  | "server_shutting_down"
  | "not_found";

export class ServeError extends Error {
  constructor(
    readonly code: ServeErrorCode,
    message: string,
    /** The request field at fault (OpenAI's `param`). */
    readonly param: string | null = null,
    /** Seconds, for 429: when to try again. */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = "ServeError";
  }
}

/** Shorthand for throwing, as `fail` is for the library. */
export function serveFail(code: ServeErrorCode, message: string, param: string | null = null, retryAfter?: number): never {
  throw new ServeError(code, message, param, retryAfter);
}

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export interface HttpError {
  status: number;
  body: OpenAIErrorBody;
  headers: Record<string, string>;
}

/** Status and OpenAI error type per code: the whole mapping. */
const SERVE_STATUS: Record<ServeErrorCode, [number, string]> = {
  invalid_api_key: [401, "authentication_error"],
  model_not_found: [404, "invalid_request_error"],
  unknown_parameter: [400, "invalid_request_error"],
  unsupported_parameter: [400, "invalid_request_error"],
  context_length_exceeded: [400, "invalid_request_error"],
  rate_limit_exceeded: [429, "rate_limit_error"],
  request_timeout: [408, "timeout_error"],
  server_shutting_down: [503, "server_error"],
  not_found: [404, "invalid_request_error"],
};

/** Library errors a request can cause are the client's (400); the rest are the server's. */
const LIBRARY_STATUS: Partial<Record<ErrorCode, [number, string]>> = {
  usage: [400, "invalid_request_error"],
  data: [400, "invalid_request_error"],
  tokenizer: [400, "invalid_request_error"],
  adapter: [404, "invalid_request_error"],
};

/** Any thrown value → status, headers and OpenAI's body. `paramOf` renames a library field (requests[0].maxNewTokens → max_tokens). */
export function toHttpError(err: unknown, paramOf: (field: string) => string | null = () => null): HttpError {
  if (err instanceof ServeError) {
    const [status, type] = SERVE_STATUS[err.code];
    const headers: Record<string, string> = err.retryAfter !== undefined ? { "retry-after": String(err.retryAfter) } : {};
    return { status, headers, body: body(err.message, type, err.param, err.code) };
  }
  if (err instanceof SoftpromptError) {
    const [status, type] = LIBRARY_STATUS[err.code] ?? [500, "server_error"];
    const param = err.place.field === undefined ? null : paramOf(err.place.field);
    return { status, headers: {}, body: body(err.message, type, param, err.code) };
  }
  // fastify's own: malformed JSON (400), body too large (413), wrong content type (415) ...
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    const code = (err as { code?: unknown }).code;
    return { status, headers: {}, body: body((err as Error).message, "invalid_request_error", null, typeof code === "string" ? code : null) };
  }
  return { status: 500, headers: {}, body: body("internal server error (logged on the server)", "server_error", null, "internal_error") };
}

function body(message: string, type: string, param: string | null, code: string | null): OpenAIErrorBody {
  return { error: { message, type, param, code } };
}
