/**
 * Retention policy, as restic and Borg define it: within each group of snapshots (one source
 * on one host), walk from newest to oldest and keep the newest snapshot of each of the N
 * latest hours, days, weeks, months and years that have one, plus the N latest overall.
 * A snapshot is kept if any rule keeps it. Pure: times in, decisions out (UTC periods).
 */

export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  /** Only snapshots carrying one of these tags are considered; the others are always kept. */
  tags?: string[];
}

export interface RetentionInput {
  id: string;
  time: string;
  tags: string[];
  group: string;
}

export interface RetentionDecision extends RetentionInput {
  keep: boolean;
  /** Which rules keep it (`last`, `daily`, …), or why it was out of scope (`untagged`). */
  reasons: string[];
}

type Rule = Exclude<keyof RetentionPolicy, "tags">;

const PERIOD: Record<Rule, (d: Date) => string> = {
  last: (d) => d.toISOString(),
  hourly: (d) => d.toISOString().slice(0, 13),
  daily: (d) => d.toISOString().slice(0, 10),
  weekly: (d) => isoWeek(d),
  monthly: (d) => d.toISOString().slice(0, 7),
  yearly: (d) => d.toISOString().slice(0, 4),
};

/** ISO 8601 week of a date (UTC): `2026-W47`. */
export function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((t.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${t.getUTCFullYear()}-W${String(week).padStart(2, "0")}`;
}

export function applyRetention(
  snapshots: readonly RetentionInput[],
  p: RetentionPolicy,
): RetentionDecision[] {
  const rules = (Object.keys(PERIOD) as Rule[]).filter((r) => (p[r] ?? 0) > 0);
  if (rules.length === 0)
    throw new RangeError(
      "A retention policy needs at least one --keep-* rule above 0: forget refuses to remove every snapshot",
    );
  const out: RetentionDecision[] = [];
  const groups = new Map<string, RetentionInput[]>();
  for (const s of snapshots) {
    if (p.tags && p.tags.length > 0 && !s.tags.some((t) => p.tags!.includes(t))) {
      out.push({ ...s, keep: true, reasons: ["untagged"] });
      continue;
    }
    groups.set(s.group, [...(groups.get(s.group) ?? []), s]);
  }
  for (const list of groups.values()) {
    const newest = [...list].sort((a, b) =>
      a.time < b.time ? 1 : a.time > b.time ? -1 : a.id.localeCompare(b.id),
    );
    const seen = new Map<Rule, Set<string>>(rules.map((r) => [r, new Set()]));
    for (const s of newest) {
      const reasons: string[] = [];
      const d = new Date(s.time);
      for (const r of rules) {
        const periods = seen.get(r)!;
        const key = r === "last" ? s.id : PERIOD[r](d);
        if (periods.has(key) || periods.size >= p[r]!) continue;
        periods.add(key);
        reasons.push(r);
      }
      out.push({ ...s, keep: reasons.length > 0, reasons });
    }
  }
  return out.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
}
