/**
 * A plain aligned text table: a header row, a rule, then rows; numbers right-aligned, text left.
 * Small enough that a dependency would cost more than it saves; widths count code points.
 */
export type Cell = string | number | null | undefined;

export interface TableOptions {
  /** Columns to right-align (default: those whose cells are all numbers or empty). */
  alignRight?: boolean[];
  /** How numbers print (default: integers as is, others with 4 significant digits). */
  formatNumber?: (n: number) => string;
}

export function formatTable(headers: string[], rows: Cell[][], options: TableOptions = {}): string {
  const formatNumber = options.formatNumber ?? formatDefault;
  const text = rows.map((row) => headers.map((_, c) => cellText(row[c], formatNumber)));
  const right =
    options.alignRight ?? headers.map((_, c) => rows.length > 0 && rows.every((row) => typeof row[c] === "number" || row[c] === null || row[c] === undefined));
  const widths = headers.map((h, c) => Math.max(width(h), ...text.map((row) => width(row[c]))));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (right[c] ? pad(cell, widths[c], "start") : c === cells.length - 1 ? cell : pad(cell, widths[c], "end")))
      .join("  ")
      .trimEnd();
  return [line(headers), line(widths.map((w) => "─".repeat(w))), ...text.map(line)].join("\n") + "\n";
}

/** Two columns, label and value: for summaries. */
export function formatPairs(pairs: [string, Cell][], formatNumber: (n: number) => string = formatDefault): string {
  const w = Math.max(...pairs.map(([k]) => width(k)));
  return pairs.map(([k, v]) => `${pad(k, w, "end")}  ${cellText(v, formatNumber)}`.trimEnd()).join("\n") + "\n";
}

function cellText(cell: Cell, formatNumber: (n: number) => string): string {
  if (cell === null || cell === undefined) return "-";
  return typeof cell === "number" ? formatNumber(cell) : cell;
}

export function formatDefault(n: number): string {
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 1e5 || Math.abs(n) < 1e-3 ? n.toExponential(3) : Number(n.toPrecision(4)).toString();
}

/** A share as a whole percent ("100%", "5%"), or "-" when there is none. */
export function percent(share: number | null | undefined): string {
  return share === null || share === undefined ? "-" : `${Math.round(share * 100)}%`;
}

const width = (s: string) => [...s].length;
const pad = (s: string, w: number, side: "start" | "end") => {
  const fill = " ".repeat(Math.max(0, w - width(s)));
  return side === "start" ? fill + s : s + fill;
};
