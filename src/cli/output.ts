/** Printing helpers for the CLI: tables for people, JSON for machines. */
export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x), 2)}\n`);
}

export function printTable(rows: Record<string, string | number | boolean>[]): void {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]!);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? "").length)));
  const line = (cells: string[]): string =>
    cells
      .map((s, i) => s.padEnd(width[i]!))
      .join("  ")
      .trimEnd();
  process.stdout.write(`${line(cols)}\n`);
  for (const r of rows) process.stdout.write(`${line(cols.map((c) => String(r[c] ?? "")))}\n`);
}

export function short(hash: string | null | undefined): string {
  return hash ? hash.slice(0, 12) : "-";
}
