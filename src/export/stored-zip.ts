/**
 * A zip archive of uncompressed ("stored") entries whose data start at a chosen alignment: the
 * container torch.save writes. Written here rather than by a zip library because torch aligns each
 * tensor's bytes (64 by default, so `torch.load(mmap=True)` can map them in place), which needs
 * control of every header's length; the format of stored entries is small (PKWARE APPNOTE 4.3).
 */
import { crc32 } from "node:zlib";
import { concatArrays } from "../util/arrays.js";
import { fail } from "../util/errors.js";

export interface ZipEntry {
  name: string;
  data: Uint8Array;
}

const LOCAL_HEADER = 30;
const CENTRAL_HEADER = 46;
const END_RECORD = 22;
/** The extra-field id torch's writer pads with (miniz's "FB"); readers skip extra fields they do not know. */
const PADDING_FIELD = 0x4246;
const UTF8_NAMES = 0x0800;
/** Offsets and sizes are 32-bit without zip64, which a prompt's embeddings never need. */
const MAX_SIZE = 0xffffffff;

/** Entries in order, each one's data starting at a multiple of `alignment` bytes into the archive. */
export function storedZip(entries: readonly ZipEntry[], alignment = 64): Uint8Array {
  const local: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const { name, data } of entries) {
    const nameBytes = new TextEncoder().encode(name);
    const crc = crc32(data);
    // Padding goes in an extra field (4 bytes of header + the pad), so the data after it lands aligned.
    const unpadded = offset + LOCAL_HEADER + nameBytes.length + 4;
    const pad = (alignment - (unpadded % alignment)) % alignment;
    const extra = new Uint8Array(4 + pad);
    new DataView(extra.buffer).setUint16(0, PADDING_FIELD, true);
    new DataView(extra.buffer).setUint16(2, pad, true);

    const header = new Uint8Array(LOCAL_HEADER);
    const h = new DataView(header.buffer);
    h.setUint32(0, 0x04034b50, true); // local file header signature
    h.setUint16(4, 20, true); // version needed to extract: 2.0
    h.setUint16(6, UTF8_NAMES, true);
    h.setUint16(8, 0, true); // method: stored
    h.setUint32(10, 0, true); // time and date: zero, as torch writes them, so the bytes do not depend on the clock
    h.setUint32(14, crc, true);
    h.setUint32(18, data.length, true); // compressed size
    h.setUint32(22, data.length, true); // uncompressed size
    h.setUint16(26, nameBytes.length, true);
    h.setUint16(28, extra.length, true);
    local.push(header, nameBytes, extra, data);

    const entry = new Uint8Array(CENTRAL_HEADER);
    const c = new DataView(entry.buffer);
    c.setUint32(0, 0x02014b50, true); // central directory header signature
    c.setUint16(4, 20, true); // version made by
    c.setUint16(6, 20, true); // version needed
    c.setUint16(8, UTF8_NAMES, true);
    c.setUint16(10, 0, true);
    c.setUint32(12, 0, true);
    c.setUint32(16, crc, true);
    c.setUint32(20, data.length, true);
    c.setUint32(24, data.length, true);
    c.setUint16(28, nameBytes.length, true);
    // extra length, comment length, disk number, internal and external attributes: all zero
    c.setUint32(42, offset, true); // where the local header is
    central.push(entry, nameBytes);

    offset += LOCAL_HEADER + nameBytes.length + extra.length + data.length;
    if (offset > MAX_SIZE) fail("usage", `the archive would exceed 4 GiB (entry "${name}"); the tensor is too large for one request`);
  }
  const directorySize = central.reduce((sum, part) => sum + part.length, 0);
  const end = new Uint8Array(END_RECORD);
  const e = new DataView(end.buffer);
  e.setUint32(0, 0x06054b50, true); // end of central directory signature
  e.setUint16(8, entries.length, true); // entries on this disk
  e.setUint16(10, entries.length, true); // entries in all
  e.setUint32(12, directorySize, true);
  e.setUint32(16, offset, true); // where the central directory starts
  return concatArrays(Uint8Array, [...local, ...central, end]);
}

