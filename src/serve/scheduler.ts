/**
 * Continuous mixed batching: ONE loop drives a GenerationEngine (infer/engine.ts). Each turn admits
 * the rows that are ready (up to the batch limit), runs one engine step — a decode token for every
 * running row whatever its adapter, and the joining rows' prefill batched together — and hands each
 * row its token. Finished rows leave at that step; new ones join at the next. A row's soft prompt is
 * computed (or found in the prompt cache) outside the loop, so a request for a new adapter never makes
 * the running rows wait, and never waits for them to finish. The engine gives each row the tokens it
 * would get alone, so batching never changes an answer.
 */
import type { GenerationEngine, Generation, RowId, RowRequest } from "../infer/engine.js";
import type { PromptState } from "../infer/kv-cache.js";
import type { TokenLogprob } from "../infer/sampling.js";
import { serveFail } from "./errors.js";
import type { ServeMetrics } from "./metrics.js";

export interface RowEvents {
  /** Every new token, in order (with its log-probabilities when the row asked for them); the last one (`last`) just before `onDone`. */
  onToken(token: number, last: boolean, logprob?: TokenLogprob): void;
  onDone(generation: Generation): void;
  onError(err: unknown): void;
}

/** A row to run; its prompt may still be computing. */
export interface SubmitRequest extends Omit<RowRequest, "prompt"> {
  prompt?: PromiseLike<PromptState>;
}

export interface Ticket {
  /** Stop the row now (client gone, timeout); no more events follow. */
  cancel(): void;
}

export interface SchedulerLimits {
  /** Rows advanced together at most. */
  maxBatchSize: number;
  /** Rows waiting to join at most; beyond it, submit answers 429. */
  maxQueue: number;
}

interface Pending {
  request: Omit<RowRequest, "prompt">;
  state?: PromptState;
  events: RowEvents;
  ready: boolean;
  /** Set once the row is in the engine. */
  row?: RowId;
  gone: boolean;
}

/**
 * How long a step may wait for requests that have arrived but are still being read or checked. ORT runs a step
 * synchronously on the event loop, so a request needs the gaps between steps to get from its first bytes to
 * `submit`; without this wait a burst trickles in a few requests per step, each paying a prefill of its own.
 * The wait sleeps until a request submits or is answered (no polling), so the clients sending the rest of
 * their requests have the cores meanwhile.
 */
const ARRIVAL_WAIT_MS = 25;
/** An arrival older than this stops being waited for (a client that sent headers and no body). */
const ARRIVAL_FORGET_MS = 2000;

export class Scheduler {
  /** Submitted and not yet in the engine, in arrival order. */
  private waiting: Pending[] = [];
  /** Requests seen by the server that have not yet submitted their rows or been answered, with when (see `arrive`). */
  private readonly arriving = new Map<object, number>();
  private readonly running = new Map<RowId, Pending>();
  /** Ends the loop's wait for arriving requests (see `untilArrivedOr`). */
  private wake: (() => void) | undefined;
  private looping = false;
  private idle: (() => void)[] = [];

  constructor(
    private readonly engine: GenerationEngine,
    private readonly limits: SchedulerLimits,
    private readonly metrics?: ServeMetrics,
  ) {}

  /** Rows waiting to join. */
  get queueDepth(): number {
    return this.waiting.length;
  }

  /** Rows in the running batch. */
  get batchSize(): number {
    return this.running.size;
  }

  /** A request (any object standing for it) has arrived and will submit rows or be answered soon: the next step waits a little for it. */
  arrive(request: object): void {
    this.arriving.set(request, performance.now());
  }

  /** The request has submitted its rows, or was answered without any (an error). */
  arrived(request: object): void {
    if (this.arriving.delete(request)) this.wakeUp();
  }

  /** Throws a 429 (before anything starts) when `rows` more would not fit the queue. */
  reserve(rows: number): void {
    if (this.waiting.length + rows > this.limits.maxQueue) {
      // A row leaves the batch every few steps; a second is a fair time to come back.
      serveFail("rate_limit_exceeded", `the server's queue is full (${this.limits.maxQueue} rows waiting); try again shortly`, null, 1);
    }
  }

  /** Queue a row; it joins the batch at the first step after its prompt is ready and a slot is free. */
  submit(request: SubmitRequest, events: RowEvents): Ticket {
    this.reserve(1);
    const { prompt, ...rest } = request;
    const pending: Pending = { request: rest, events, ready: prompt === undefined, gone: false };
    this.waiting.push(pending);
    this.metrics?.queueDepth.set(this.waiting.length);
    this.wakeUp();
    if (prompt !== undefined) {
      Promise.resolve(prompt).then(
        (state) => {
          pending.state = state;
          pending.ready = true;
          this.kick();
        },
        (err) => {
          this.drop(pending);
          if (!pending.gone) events.onError(err);
          pending.gone = true;
        },
      );
    } else this.kick();
    return { cancel: () => this.cancel(pending) };
  }

  /** Resolves once no row is waiting or running (graceful shutdown). */
  drained(): Promise<void> {
    if (!this.looping && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private cancel(pending: Pending): void {
    if (pending.gone) return;
    pending.gone = true;
    this.drop(pending);
    if (pending.row !== undefined) {
      this.engine.cancel(pending.row);
      this.running.delete(pending.row);
    }
  }

  private drop(pending: Pending): void {
    this.waiting = this.waiting.filter((p) => p !== pending);
    this.metrics?.queueDepth.set(this.waiting.length);
    this.settleIfIdle();
  }

  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    void this.loop().finally(() => {
      this.looping = false;
      // A row may have become ready while the last step ran.
      if (this.waiting.some((p) => p.ready)) this.kick();
      else this.settleIfIdle();
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      // Let the event loop take in requests that arrived during the last step, so they join this one
      // together instead of trickling in one step at a time.
      await nextTurn();
      // An idle engine first lets a burst of requests finish arriving, so they prefill as one batch, not in waves.
      for (let seen = -1; this.running.size === 0 && this.waiting.length > seen && this.waiting.length < this.limits.maxBatchSize; ) {
        seen = this.waiting.length;
        await nextTurn();
      }
      // Requests still being read join this step rather than a later one, each with a prefill of its own.
      for (const until = performance.now() + ARRIVAL_WAIT_MS; this.stillArriving() && performance.now() < until; ) await this.untilArrivedOr(until);
      this.admit();
      if (this.running.size === 0) return;
      this.metrics?.batchSize.observe(this.running.size);
      this.metrics?.running.set(this.running.size);
      let tokens;
      try {
        tokens = await this.engine.step();
      } catch (err) {
        // A failed forward drops every row of the step (engine.ts): each of their requests gets the error.
        for (const p of this.running.values()) {
          p.gone = true;
          p.events.onError(err);
        }
        this.running.clear();
        continue;
      }
      for (const { row, token, logprob, done } of tokens) {
        const p = this.running.get(row);
        if (p === undefined) continue; // cancelled during the step
        p.events.onToken(token, done !== undefined, logprob);
        if (done !== undefined) {
          this.running.delete(row);
          p.gone = true;
          p.events.onDone(done);
        }
      }
      this.metrics?.running.set(this.running.size);
    }
  }

  /** Resolves when a request submits or is answered, or at `until` (a performance.now() time). */
  private untilArrivedOr(until: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, until - performance.now());
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Whether a request is on its way to `submit`; one that never got there (a body that never came) is forgotten after a while. */
  private stillArriving(): boolean {
    const stale = performance.now() - ARRIVAL_FORGET_MS;
    for (const [request, at] of this.arriving) if (at < stale) this.arriving.delete(request);
    return this.arriving.size > 0;
  }

  /** Ready rows join the engine, oldest first, while the batch has room. */
  private admit(): void {
    while (this.running.size < this.limits.maxBatchSize) {
      const next = this.waiting.find((p) => p.ready);
      if (next === undefined) break;
      this.waiting = this.waiting.filter((p) => p !== next);
      try {
        next.row = this.engine.add({ ...next.request, prompt: next.state });
        this.running.set(next.row, next);
      } catch (err) {
        next.gone = true;
        next.events.onError(err);
      }
    }
    this.metrics?.queueDepth.set(this.waiting.length);
  }

  private settleIfIdle(): void {
    if (this.looping || this.waiting.length > 0) return;
    for (const resolve of this.idle.splice(0)) resolve();
  }
}

/** One turn of the event loop: the I/O that arrived meanwhile (requests, cancels) is handled first. */
function nextTurn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}
