import { fail } from "../util/errors.js";
import { Rng } from "../util/rng.js";
import { IGNORE_INDEX, type TokenizedExample } from "./tokenize.js";

export interface BatchOptions {
  batchSize: number;
  padTokenId: number;
  /** "right" for training; "left" for generation, so every row's last token is real. */
  padSide: "left" | "right";
  /** Shuffle the examples before grouping them. Default false. */
  shuffle?: boolean;
  /** Seed for the shuffle (default 0); ignored when `rng` is given. */
  seed?: number;
  /** Shuffle with this generator instead, so a trainer can draw a new order each epoch and checkpoint its state. */
  rng?: Rng;
}

/** A padded batch: row-major [batchSize, seqLen] ids, mask and labels (makeBatches gives Int32Arrays; graphs take any numbers). */
export interface Batch<A extends ArrayLike<number> = Int32Array> {
  inputIds: A;
  /** 1 for a real token, 0 for padding. */
  attentionMask: A;
  /** -100 on padding and wherever nothing is learned. */
  labels: A;
  batchSize: number;
  seqLen: number;
  /** Each row's task (undefined for a row without one); present when any row of the batch has a task. */
  tasks?: readonly (string | undefined)[];
  /** The tokenized examples of the rows, in row order (makeBatches sets it): objectives and adaptations read per-row data from them. */
  items?: readonly TokenizedExample[];
}

/** Group examples into batches, each padded to its own longest row. The last batch may be smaller. */
export function makeBatches(items: readonly TokenizedExample[], options: BatchOptions): Batch[] {
  const { batchSize, padTokenId, padSide } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    fail("usage", `batchSize must be a positive integer, got ${batchSize}`, { field: "batchSize" });
  }
  if (!Number.isInteger(padTokenId)) fail("usage", `padTokenId must be an integer, got ${padTokenId}`, { field: "padTokenId" });
  items.forEach((item, i) => {
    if (item.labels.length !== item.inputIds.length) {
      fail("usage", `item ${i} has ${item.inputIds.length} input ids but ${item.labels.length} labels; expected equal lengths`);
    }
  });

  const order = options.shuffle ? (options.rng ?? new Rng(options.seed ?? 0)).shuffle([...items]) : items;
  const batches: Batch[] = [];
  for (let first = 0; first < order.length; first += batchSize) {
    batches.push(padBatch(order.slice(first, first + batchSize), padTokenId, padSide));
  }
  return batches;
}

function padBatch(rows: readonly TokenizedExample[], padTokenId: number, padSide: "left" | "right"): Batch {
  const seqLen = Math.max(...rows.map((r) => r.inputIds.length));
  const size = rows.length * seqLen;
  const inputIds = new Int32Array(size).fill(padTokenId);
  const attentionMask = new Int32Array(size); // zeros: padding
  const labels = new Int32Array(size).fill(IGNORE_INDEX);
  rows.forEach((row, r) => {
    const offset = r * seqLen + (padSide === "left" ? seqLen - row.inputIds.length : 0);
    inputIds.set(row.inputIds, offset);
    labels.set(row.labels, offset);
    attentionMask.fill(1, offset, offset + row.inputIds.length);
  });
  const batch: Batch = { inputIds, attentionMask, labels, batchSize: rows.length, seqLen, items: rows };
  return rows.some((r) => r.task !== undefined) ? { ...batch, tasks: rows.map((r) => r.task) } : batch;
}
