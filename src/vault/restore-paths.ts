/**
 * Path safety for restore: a snapshot's tree is untrusted input. Every path must be
 * relative, made of plain segments, and unique; nothing may be written through a symlink;
 * a symlink whose target leaves the restore target is not created.
 */
import { posix } from "node:path";
import { VaultError, VaultErrorCode } from "./errors.js";
import type { FileNode } from "./snapshot.js";

/** Throws UnsafePath unless `path` is a relative path of plain segments. */
export function assertSafePath(path: string, snapshotId: string): void {
  const bad =
    path.length === 0 ||
    path.includes("\0") ||
    path.includes("\\") ||
    path.startsWith("/") ||
    path.split("/").some((s) => s === "" || s === "." || s === "..");
  if (bad)
    throw new VaultError(
      { code: VaultErrorCode.UnsafePath, path, snapshotId },
      `Cannot restore snapshot ${snapshotId}: its tree holds the unsafe path ${JSON.stringify(path)}, which could write outside the target; the snapshot was made by a tampered or malicious writer`,
    );
}

/**
 * Whether a symlink at `path` with `target` resolves inside the restore root. The check is
 * lexical, so `..` may only lead the target: after a name it would climb from wherever that
 * name resolves, and the name may be another symlink of the tree (with `self -> .`,
 * `self/self/../..` normalises to `.` but leaves the root). An empty target is refused too:
 * it cannot be created.
 */
export function symlinkStaysInside(path: string, target: string): boolean {
  if (target === "" || target.startsWith("/") || target.includes("\0")) return false;
  const segments = target.split("/");
  const firstName = segments.findIndex((s) => s !== ".." && s !== "." && s !== "");
  if (firstName >= 0 && segments.slice(firstName).includes("..")) return false;
  const resolved = posix.normalize(posix.join(posix.dirname(path), target));
  return resolved !== ".." && !resolved.startsWith("../");
}

/**
 * Checks a whole tree: safe, unique paths, and no entry beneath a symlink or a file of the
 * same tree (which a writer would otherwise follow or clobber).
 */
export function checkTree(nodes: readonly FileNode[], snapshotId: string): void {
  const kinds = new Map<string, FileNode["type"]>();
  for (const n of nodes) {
    assertSafePath(n.path, snapshotId);
    if (kinds.has(n.path))
      throw new VaultError(
        { code: VaultErrorCode.UnsafePath, path: n.path, snapshotId },
        `Cannot restore snapshot ${snapshotId}: its tree lists ${JSON.stringify(n.path)} twice`,
      );
    kinds.set(n.path, n.type);
  }
  for (const n of nodes) {
    const parts = n.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const kind = kinds.get(parts.slice(0, i).join("/"));
      if (kind !== undefined && kind !== "dir")
        throw new VaultError(
          { code: VaultErrorCode.UnsafePath, path: n.path, snapshotId },
          `Cannot restore snapshot ${snapshotId}: ${JSON.stringify(n.path)} lies beneath a ${kind}, which restore will not write through`,
        );
    }
  }
}
