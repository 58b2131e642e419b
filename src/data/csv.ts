import { fail } from "../util/errors.js";

export interface CsvRecord {
  /** 1-based line where the record starts (a quoted field may run over several lines). */
  line: number;
  fields: string[];
}

/**
 * RFC 4180 CSV: comma-separated; a field in double quotes may hold commas, line breaks and `""` for a quote.
 * Accepts LF, CRLF or CR line ends and a leading byte-order mark. Blank lines are skipped.
 * Strict where leniency would silently shift columns: text after a closing quote, or a quote never closed.
 */
export function parseCsv(text: string, file: string): CsvRecord[] {
  const records: CsvRecord[] = [];
  let pos = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  let fields: string[] = [];
  let recordLine = 1;
  let atRecordStart = true;
  let quotedField = false; // a record holding just "" is an empty value, not a blank line

  while (pos <= text.length) {
    if (atRecordStart) {
      recordLine = line;
      fields = [];
      quotedField = false;
      atRecordStart = false;
    }
    let field = "";
    if (text[pos] === '"') {
      const openedAt = line;
      quotedField = true;
      pos++;
      for (;;) {
        if (pos >= text.length) fail("data", "a quoted field is never closed (missing \")", { file, line: openedAt });
        const ch = text[pos];
        if (ch === '"') {
          if (text[pos + 1] === '"') {
            field += '"';
            pos += 2;
            continue;
          }
          pos++;
          break;
        }
        if (ch === "\n" || (ch === "\r" && text[pos + 1] !== "\n")) line++;
        field += ch;
        pos++;
      }
      const next = text[pos];
      if (pos < text.length && next !== "," && next !== "\n" && next !== "\r") {
        fail("data", `unexpected ${JSON.stringify(next)} after a closing quote; expected "," or the end of the line`, { file, line });
      }
    } else {
      // An unquoted field runs to the next comma or line end; a stray quote inside is kept as text.
      const start = pos;
      while (pos < text.length && text[pos] !== "," && text[pos] !== "\n" && text[pos] !== "\r") pos++;
      field = text.slice(start, pos);
    }
    fields.push(field);

    if (pos >= text.length) {
      pushRecord(records, fields, recordLine, quotedField);
      break;
    }
    const sep = text[pos];
    if (sep === ",") {
      pos++;
      continue;
    }
    // Line end: CRLF, LF or CR.
    pos += sep === "\r" && text[pos + 1] === "\n" ? 2 : 1;
    line++;
    pushRecord(records, fields, recordLine, quotedField);
    atRecordStart = true;
    if (pos >= text.length) break;
  }
  return records;
}

function pushRecord(records: CsvRecord[], fields: string[], line: number, quoted: boolean): void {
  const blank = !quoted && fields.length === 1 && fields[0] === "";
  if (!blank) records.push({ line, fields });
}
