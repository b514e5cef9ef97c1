/**
 * A restore's staging tree beside its target (`<target>.restore-<snapshot>`, marked with the
 * snapshot it belongs to so that a killed restore resumes into it), and the check that the
 * files will fit before anything is written.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdir, stat, statfs } from "node:fs/promises";
import { dirname, join } from "node:path";
import { mib } from "../util/format.js";
import { fsyncDir } from "../util/fs-atomic.js";
import { VaultError, VaultErrorCode } from "./errors.js";
import type { FileNode } from "./snapshot.js";

/** The file in a staging tree naming the snapshot it belongs to; removed just before the swap. */
export const MARKER = ".chainvault-restore";

/** Removes a staging tree of another snapshot (or one already swapped): it is not ours to resume. */
export function dropForeignStaging(staging: string, snapshotId: string): void {
  const marker = join(staging, MARKER);
  if (!existsSync(staging)) return;
  const owner = existsSync(marker) ? readFileSync(marker, "utf8") : "";
  if (owner !== snapshotId) rmSync(staging, { recursive: true, force: true });
}

/** The snapshot's files a resumed staging tree already holds whole (their final name, their size). */
export async function completeFiles(staging: string, nodes: { f: FileNode }[]): Promise<Set<string>> {
  const complete = new Set<string>();
  for (const { f } of nodes) {
    if (f.type !== "file") continue;
    const done = await stat(join(staging, f.path)).catch(() => undefined);
    if (done?.isFile() && done.size === f.sizeBytes) complete.add(f.path);
  }
  return complete;
}

/**
 * Refuses, before anything is written, a restore whose files cannot fit: the bytes still to
 * stage (files a resumed staging tree holds whole are not counted), each file rounded up to
 * the file system's block, against what an unprivileged writer may use there. A file system
 * that cannot say (statfs fails) is not checked; a disk that fills up meanwhile is reported
 * when a write fails.
 */
export async function checkSpace(
  staging: string,
  target: string,
  snapshotId: string,
  nodes: { f: FileNode }[],
  complete: ReadonlySet<string>,
): Promise<void> {
  let at = dirname(staging);
  let fs = await statfs(at).catch(() => undefined);
  while (!fs && dirname(at) !== at) {
    at = dirname(at);
    fs = await statfs(at).catch(() => undefined);
  }
  if (!fs) return;
  const block = fs.bsize;
  let need = 0;
  for (const { f } of nodes) {
    if (f.type === "dir") need += block;
    if (f.type !== "file" || complete.has(f.path)) continue;
    need += Math.ceil(f.sizeBytes / block) * block;
  }
  const free = fs.bavail * block;
  if (need > free)
    throw new VaultError(
      { code: VaultErrorCode.NoSpace, snapshotId, target, needBytes: need, freeBytes: free },
      `Cannot restore snapshot ${snapshotId} into ${target}: its files need ${mib(need)} and the file system holding ${at} has ${mib(free)} free; free space there (or restore to another --target) and run the restore again. Nothing was written`,
    );
}

/**
 * Creates `rel`'s directories under `base` (which exists) one level at a time. Node's
 * recursive mkdir reports a full file system (no inode left) as ENOENT, since it stats the
 * directory it failed to make; one level at a time the ENOSPC comes through.
 */
export async function mkdirUnder(base: string, rel: string, mode: number): Promise<void> {
  let at = base;
  for (const part of rel.split("/")) {
    if (part === "" || part === ".") continue;
    at = join(at, part);
    await mkdir(at, { mode }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw err;
    });
  }
}

export function prepareStaging(staging: string, snapshotId: string): void {
  const marker = join(staging, MARKER);
  // The staging directory itself not recursively (see mkdirUnder).
  mkdirSync(dirname(staging), { recursive: true });
  if (!existsSync(staging)) mkdirSync(staging, { mode: 0o700 });
  writeFileSync(marker, snapshotId);
  fsyncDir(dirname(staging));
}
