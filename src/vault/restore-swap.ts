/**
 * The last step of a restore: put the staged tree in place of the target, keeping the old
 * data aside. A journal beside the target names every step before it is taken, so a
 * restore killed at any instant is finished by the next run (or `finishPendingSwap`):
 * the target then holds the complete new data, and `<target>.pre-restore-<time>` the old.
 *
 * Steps: (1) entries of the target that the restore does not replace move into the
 * staging tree; (2) the target is renamed aside; (3) the staging tree is renamed to the
 * target. Each is a rename within one file system, so nothing is copied and nothing lost.
 */
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { crashPoint } from "../util/crash-points.js";
import { fsyncDir, writeFileAtomic } from "../util/fs-atomic.js";
import { isAlive } from "../util/process.js";
import { VaultError, VaultErrorCode } from "./errors.js";

interface SwapJournal {
  version: 1;
  target: string;
  staging: string;
  keptAside: string;
  /** Root paths (relative, `/`) the restore replaces wholesale; everything else of the target is carried over. */
  replaced: string[];
}

export function journalPathOf(target: string): string {
  return join(dirname(target), `.${basename(target)}.restore-journal.json`);
}

/** Swaps `staging` in for `target`; returns the directory holding the old data, if any. */
export function swapIntoPlace(
  target: string,
  staging: string,
  replaced: readonly string[],
  now = new Date(),
): string | undefined {
  const stamp = now.toISOString().replace(/[:.]/g, "-");
  const keptAside = `${target}.pre-restore-${stamp}`;
  // A target given with a trailing slash names its siblings inside it: no rename could then
  // finish, and a journal written now would make every later restore of it fail.
  for (const p of [staging, keptAside])
    if (isInside(target, p))
      throw new VaultError(
        { code: VaultErrorCode.TargetConflict, target, path: p },
        `Cannot restore into ${target}: ${p} would lie inside it; give the target directory without a trailing slash`,
      );
  const j: SwapJournal = { version: 1, target, staging, keptAside, replaced: [...replaced] };
  writeFileAtomic(journalPathOf(target), JSON.stringify(j));
  crashPoint("vault.restore-swap-journaled");
  return runSwap(j);
}

/** Finishes a swap that a killed restore started; returns where the old data went, if it did. */
export function finishPendingSwap(target: string): { keptAside?: string } | undefined {
  const path = journalPathOf(target);
  removeDeadJournalTemporaries(path);
  if (!existsSync(path)) return undefined;
  const j = JSON.parse(readFileSync(path, "utf8")) as SwapJournal;
  const kept = runSwap(j);
  return kept ? { keptAside: kept } : {};
}

/**
 * Removes the temporary files (`<journal>.tmp-<pid>`, see writeFileAtomic) of restores
 * killed while writing their journal: nothing else would, and they sit beside the target.
 */
function removeDeadJournalTemporaries(journal: string): void {
  const prefix = `${basename(journal)}.tmp-`;
  let names: string[];
  try {
    names = readdirSync(dirname(journal));
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const pid = Number(n.slice(prefix.length));
    // A live writer's temporary is its own business.
    if (Number.isSafeInteger(pid) && isAlive(pid)) continue;
    rmSync(join(dirname(journal), n), { force: true });
  }
}

function runSwap(j: SwapJournal): string | undefined {
  const replaced = new Set(j.replaced);
  const hadTarget = existsSync(j.target) || existsSync(j.keptAside);
  if (existsSync(j.staging) && existsSync(j.target)) {
    // The target directory itself is not in any snapshot: it keeps the mode it had.
    chmodSync(j.staging, statSync(j.target).mode & 0o7777);
    carryOver(j.target, j.staging, "", replaced);
    fsyncDir(j.staging);
    crashPoint("vault.restore-swap-carried");
    renameSync(j.target, j.keptAside);
    fsyncDir(dirname(j.target));
    crashPoint("vault.restore-swap-aside");
  }
  if (existsSync(j.staging) && !existsSync(j.target)) {
    renameSync(j.staging, j.target);
    fsyncDir(dirname(j.target));
  }
  rmSync(journalPathOf(j.target), { force: true });
  fsyncDir(dirname(j.target));
  return hadTarget && existsSync(j.keptAside) ? j.keptAside : undefined;
}

function isInside(dir: string, p: string): boolean {
  const r = relative(resolve(dir), resolve(p));
  return r === "" || (!isAbsolute(r) && r.split(sep)[0] !== "..");
}

/**
 * Moves into `to` every entry under `from` that lies outside the replaced roots; descends
 * only into directories that contain a replaced root.
 */
function carryOver(from: string, to: string, rel: string, replaced: ReadonlySet<string>): void {
  for (const name of readdirSync(join(from, rel))) {
    const p = rel === "" ? name : `${rel}/${name}`;
    if (replaced.has(p)) continue;
    const src = join(from, p);
    const holdsRoot = [...replaced].some((r) => r.startsWith(`${p}/`));
    if (holdsRoot && lstatSync(src).isDirectory()) {
      carryOver(from, to, p, replaced);
      continue;
    }
    const dst = join(to, p);
    if (existsSync(dst)) continue;
    mkdirSync(dirname(dst), { recursive: true });
    renameSync(src, dst);
  }
}
