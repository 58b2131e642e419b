/**
 * Host-side construction of the integer inputs a forward pass takes: positions and the boolean
 * attention pattern (causal and padding), laid out as the graph expects.
 */

/**
 * allowed[b, 0, t, s] for T queries over S = past + T keys: key s is visible to query t when it is
 * not padding (keyMask[b][s] = 1) and not in the future (s <= past + t). [B, 1, T, S] as bytes.
 */
export function attentionPattern(keyMask: readonly (readonly number[])[], queries: number): { data: Uint8Array; dims: number[] } {
  const batch = keyMask.length;
  const keys = keyMask[0]?.length ?? 0;
  const past = keys - queries;
  const data = new Uint8Array(batch * queries * keys);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < queries; t++) {
      const row = (b * queries + t) * keys;
      for (let s = 0; s <= past + t; s++) data[row + s] = keyMask[b][s] ? 1 : 0;
    }
  }
  return { data, dims: [batch, 1, queries, keys] };
}

/** Positions [B, T] as int64: `start, start+1, …` for every row (HF's default when no position_ids are given). */
export function arangePositions(batch: number, length: number, start = 0): { data: BigInt64Array; dims: number[] } {
  const data = new BigInt64Array(batch * length);
  for (let b = 0; b < batch; b++) for (let t = 0; t < length; t++) data[b * length + t] = BigInt(start + t);
  return { data, dims: [batch, length] };
}

/** Positions from a padding mask, as generate() derives them: cumsum(mask) - 1, padding set to 1. */
export function positionsFromMask(mask: readonly (readonly number[])[]): { data: BigInt64Array; dims: number[] } {
  const batch = mask.length;
  const length = mask[0]?.length ?? 0;
  const data = new BigInt64Array(batch * length);
  for (let b = 0; b < batch; b++) {
    let seen = 0;
    for (let t = 0; t < length; t++) {
      seen += mask[b][t] ? 1 : 0;
      data[b * length + t] = BigInt(mask[b][t] ? seen - 1 : 1);
    }
  }
  return { data, dims: [batch, length] };
}

/** Token ids [B, T] as an int64 tensor. */
export function idsTensor(rows: readonly (readonly number[])[]): { data: BigInt64Array; dims: number[] } {
  const length = rows[0]?.length ?? 0;
  const data = new BigInt64Array(rows.length * length);
  rows.forEach((row, b) => row.forEach((id, t) => (data[b * length + t] = BigInt(id))));
  return { data, dims: [rows.length, length] };
}

/**
 * How positions are given after virtual tokens: "row" — each row as if alone (virtual tokens 0..n-1,
 * then its real tokens n, n+1, …, wherever its padding sits); "peft" — 0..n+T-1 over virtual tokens,
 * padding and tokens, as PEFT's prompt tuning (it passes no position_ids).
 */
export type PositionMode = "row" | "peft";
