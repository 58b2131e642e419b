/** Typed-array helpers shared by the file writers. */

/** The parts one after another in a new array of the same kind as `make` builds. */
export function concatArrays<T extends Uint8Array | Int32Array | Float32Array>(make: new (length: number) => T, parts: readonly ArrayLike<number>[]): T {
  const out = new make(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
