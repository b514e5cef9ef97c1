/**
 * The results of bench/backup: per tool the four timed steps, the repository size and the
 * peak memory; the table printed for people and the one JSON line printed for machines.
 */
import type { Timed } from "./measure.js";
import type { ToolName } from "./tools.js";

export type Step = "full" | "incremental" | "restore" | "verify";

export const STEPS: readonly Step[] = ["full", "incremental", "restore", "verify"];

/** What one tool did; `error` is set from its first failed command on, and later steps are absent. */
export interface ToolResult {
  name: ToolName;
  steps: Partial<Record<Step, Timed>>;
  /** Which step failed, and the tool's last words. */
  error?: { step: Step | "init"; message: string };
  repoBytes?: number;
  /** Whether the restored tree matches the source byte for byte, with the first differences. */
  restore?: { identical: boolean; differences: string[] };
}

/** The largest peak RSS of a tool's timed steps, in KiB; undefined unless all four ran. */
export function peakRssKiB(r: ToolResult): number | undefined {
  if (!STEPS.every((s) => r.steps[s]?.ok)) return undefined;
  return Math.max(...STEPS.map((s) => r.steps[s]!.peakRssKiB));
}

interface Measure {
  label: string;
  /** The figure of a tool, if it has one. */
  value(r: ToolResult): number | undefined;
  /** Where the failure of this measure shows, for a tool that failed. */
  step?: Step;
  format(v: number): string;
  /** speedup: other / ours (higher is better); ratio: ours / other (lower is better). */
  compare: "speedup" | "ratio";
  /** The target for chainvault against restic. */
  target: string;
}

const MiB = 1024 * 1024;

const MEASURES: readonly Measure[] = [
  ...(
    [
      ["full", "full backup s", "≥ 2.0×"],
      ["incremental", "incremental s", "≥ 3.0×"],
      ["restore", "restore s", "≥ 1.5×"],
      ["verify", "verify s", "≥ 1.5×"],
    ] as const
  ).map(
    ([step, label, target]): Measure => ({
      label,
      step,
      // A restore that does not reproduce the source byte for byte has no time worth comparing.
      value: (r) =>
        r.steps[step]?.ok && !(step === "restore" && r.restore?.identical === false)
          ? r.steps[step].seconds
          : undefined,
      format: (v) => v.toFixed(2),
      compare: "speedup",
      target,
    }),
  ),
  {
    label: "repo size MiB",
    value: (r) => r.repoBytes,
    format: (v) => (v / MiB).toFixed(1),
    compare: "ratio",
    target: "≤ 1.03",
  },
  {
    label: "peak RSS MiB",
    value: peakRssKiB,
    format: (v) => (v / 1024).toFixed(1),
    compare: "ratio",
    target: "≤ 1.0",
  },
];

function compareOf(m: Measure, ours: number | undefined, other: number | undefined): number | undefined {
  if (ours === undefined || other === undefined || ours <= 0 || other <= 0) return undefined;
  return m.compare === "speedup" ? other / ours : ours / other;
}

// 60 characters: a failure's cell stays readable; the whole message is printed above the table.
const CELL_CHARS_MAX = 60;

function cell(text: string): string {
  return text.length > CELL_CHARS_MAX ? `${text.slice(0, CELL_CHARS_MAX - 1)}…` : text;
}

/** The table: one row per measure, one column per tool, then chainvault against each peer. */
export function resultTable(results: ToolResult[]): Record<string, Record<string, string>> {
  const by = new Map(results.map((r) => [r.name, r]));
  const cv = by.get("chainvault");
  const table: Record<string, Record<string, string>> = {};
  for (const m of MEASURES) {
    const row: Record<string, string> = {};
    for (const r of results) {
      const v = m.value(r);
      // A failure shows in the row of the step that failed; a failed init in the full backup's.
      const failedHere =
        r.error !== undefined &&
        m.step !== undefined &&
        (r.error.step === m.step || (r.error.step === "init" && m.step === "full"));
      row[r.name] = v !== undefined ? m.format(v) : failedHere ? cell(`${r.name}: ${r.error!.message}`) : "-";
    }
    for (const peer of ["restic", "borg"] as const) {
      const c = compareOf(m, cv && m.value(cv), by.get(peer) && m.value(by.get(peer)!));
      row[`chainvault vs ${peer}`] = c === undefined ? "-" : `${c.toFixed(2)}×`;
    }
    row["target vs restic"] = m.target;
    table[m.label] = row;
  }
  const identical: Record<string, string> = {};
  for (const r of results) identical[r.name] = r.restore ? (r.restore.identical ? "OK" : "FAIL") : "-";
  table["restore identical"] = identical;
  return table;
}

/** The JSON line: chainvault against restic, null where either has no figure. */
export function summaryJson(results: ToolResult[]): string {
  const cv = results.find((r) => r.name === "chainvault");
  const restic = results.find((r) => r.name === "restic");
  const fig = (label: string): number | null => {
    const m = MEASURES.find((x) => x.label === label)!;
    const c = compareOf(m, cv && m.value(cv), restic && m.value(restic));
    return c === undefined ? null : Number(c.toFixed(3));
  };
  return JSON.stringify({
    full_backup_speedup_vs_restic: fig("full backup s"),
    incremental_speedup_vs_restic: fig("incremental s"),
    restore_speedup_vs_restic: fig("restore s"),
    verify_speedup_vs_restic: fig("verify s"),
    repo_size_ratio_vs_restic: fig("repo size MiB"),
    peak_rss_ratio_vs_restic: fig("peak RSS MiB"),
  });
}
