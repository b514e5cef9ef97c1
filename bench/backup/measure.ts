/**
 * Measuring helpers of bench/backup: a child process timed by GNU time (elapsed seconds
 * and peak resident memory), the size and the per-file digests of a directory tree, and
 * the share of a file's 4 KiB pages that changed between two moments.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  writeSync,
} from "node:fs";
import { join, relative } from "node:path";

/** One timed command: how long it ran, its peak RSS, and why it failed if it did. */
export interface Timed {
  ok: boolean;
  seconds: number;
  peakRssKiB: number;
  /** The line of the command's output that names its error, or the exit status, when it failed. */
  error?: string;
}

/** How to run one command of a tool. */
export interface Command {
  argv: string[];
  cwd?: string;
  env?: Record<string, string>;
}

// 2 hours: far above any step at 2 GiB on this machine; a hung tool fails its row, not the run.
const COMMAND_TIMEOUT_MS = 2 * 60 * 60 * 1000;

/**
 * Runs `cmd` under `/usr/bin/time -f "%e %M"`, its output going to `logPath`. GNU time
 * reports the child's wall-clock seconds and its peak RSS in KiB (for a tool that forks,
 * the largest process's, not their sum).
 */
export function timed(cmd: Command, logPath: string): Timed {
  const timePath = `${logPath}.time`;
  const log = openSync(logPath, "w");
  let status: number | null;
  try {
    const r = spawnSync("/usr/bin/time", ["-f", "%e %M", "-o", timePath, ...cmd.argv], {
      cwd: cmd.cwd,
      env: { ...process.env, ...cmd.env },
      stdio: ["ignore", log, log],
      timeout: COMMAND_TIMEOUT_MS,
    });
    if (r.error) return { ok: false, seconds: 0, peakRssKiB: 0, error: r.error.message };
    status = r.status;
  } finally {
    closeSync(log);
  }
  // GNU time writes "Command exited with non-zero status N" before its format line.
  const lines = existsSync(timePath) ? readFileSync(timePath, "utf8").trim().split("\n") : [];
  const [seconds, rss] = (lines.at(-1) ?? "").split(" ").map(Number);
  const result = { seconds: seconds ?? 0, peakRssKiB: rss ?? 0 };
  if (status === 0) return { ok: true, ...result };
  const out = readFileSync(logPath, "utf8").trim().split("\n").filter(Boolean);
  // The line that names the error (commander, restic and borg print help or context around it).
  const said = out.find((l) => /\b(error|fatal)\b/i.test(l)) ?? out.at(-1);
  return { ok: false, ...result, error: said?.trim() ?? `exit status ${status}` };
}

/** Every regular file under `dir`, as paths relative to it, sorted. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out;
}

/** Total bytes of the regular files under `dir` (what `du -sb` counts, less directory entries). */
export function treeBytes(dir: string): number {
  let total = 0;
  for (const f of listFiles(dir)) total += lstatSync(join(dir, f)).size;
  return total;
}

// 4 MiB reads: large enough to stream at disk speed, small enough to stay out of the RSS figures.
const READ_BYTES = 4 * 1024 * 1024;

/** Calls `fn` with successive pieces of a file, read in order. */
function readChunks(path: string, fn: (chunk: Buffer) => void): void {
  const fd = openSync(path, "r");
  const buf = Buffer.allocUnsafe(READ_BYTES);
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      fn(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * sha256 of every file under `dir`, keyed by relative path. Reading everything is also how
 * the benchmark warms the page cache before the first timed run.
 */
export function treeDigest(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of listFiles(dir)) {
    const h = createHash("sha256");
    readChunks(join(dir, f), (c) => h.update(c));
    out.set(f, h.digest("hex"));
  }
  return out;
}

/** The files that differ between two digests (missing, extra or changed), at most `max` of them. */
export function digestDiff(want: Map<string, string>, got: Map<string, string>, max = 5): string[] {
  const bad: string[] = [];
  for (const [f, h] of want) if (got.get(f) !== h) bad.push(got.has(f) ? `${f} differs` : `${f} missing`);
  for (const f of got.keys()) if (!want.has(f)) bad.push(`${f} extra`);
  return bad.slice(0, max);
}

// 4 KiB: SQLite's default page size, so one page of the database is one unit here.
export const PAGE_BYTES = 4096;

/** sha256 (first 16 bytes) of each 4 KiB page of a file. */
export function pageHashes(path: string): Buffer[] {
  const out: Buffer[] = [];
  let carry = Buffer.alloc(0);
  readChunks(path, (c) => {
    const b = carry.length ? Buffer.concat([carry, c]) : c;
    let i = 0;
    for (; i + PAGE_BYTES <= b.length; i += PAGE_BYTES)
      out.push(
        createHash("sha256")
          .update(b.subarray(i, i + PAGE_BYTES))
          .digest()
          .subarray(0, 16),
      );
    carry = Buffer.from(b.subarray(i));
  });
  if (carry.length) out.push(createHash("sha256").update(carry).digest().subarray(0, 16));
  return out;
}

/** How the pages of a file changed: rewritten in place, added at the end, and the share of the new file. */
export interface PageChange {
  pagesBefore: number;
  pagesAfter: number;
  rewritten: number;
  added: number;
  /** (rewritten + added) / pagesAfter: the share of the new file a backup must store again. */
  changedFraction: number;
  /** rewritten / pagesBefore: the share of the old file modified in place. */
  rewrittenFraction: number;
}

export function pageChange(before: Buffer[], after: Buffer[]): PageChange {
  let rewritten = 0;
  const common = Math.min(before.length, after.length);
  for (let i = 0; i < common; i++) if (!before[i]!.equals(after[i]!)) rewritten++;
  const added = Math.max(0, after.length - before.length);
  return {
    pagesBefore: before.length,
    pagesAfter: after.length,
    rewritten,
    added,
    changedFraction: after.length ? (rewritten + added) / after.length : 0,
    rewrittenFraction: before.length ? rewritten / before.length : 0,
  };
}

/**
 * Writes `bytes` of scratch data at `path`, flushes and deletes it. On this class of VM the
 * first process to write a few GiB after a while pays the host for backing fresh pages
 * (measured: a 2.3 GiB restore spends 6.5 s in the kernel instead of 1.8 s), and the next
 * writer reuses the pages the previous one freed. Run before each tool's restore, it gives
 * every tool the same start, as reading the data once does for the backups.
 */
export function warmWritePages(path: string, bytes: number): void {
  const block = Buffer.alloc(4 * 1024 * 1024, 0x5a);
  const fd = openSync(path, "w");
  try {
    for (let done = 0; done < bytes; done += block.length) writeSync(fd, block);
  } finally {
    closeSync(fd);
  }
  spawnSync("sync");
  rmSync(path, { force: true });
  spawnSync("sync");
}
