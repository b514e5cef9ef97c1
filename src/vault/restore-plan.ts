/**
 * The parts of a restore that decide what to do and check what was done, around the data
 * path in restore.ts: which components, whether the snapshot may be restored at all
 * (every chunk indexed in a stored pack, no failed verification), which top-level paths
 * the swap replaces, the staged tree's sizes, and the chunks a target's own files still
 * hold (delta restore).
 */
import { lstat, open as openFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { ChunkIndex } from "./chunk-index.js";
import { chunkId } from "./crypto.js";
import { VaultError, VaultErrorCode } from "./errors.js";
import { chunkBufferPool, forEachChunk } from "./file-chunks.js";
import { packObjectName } from "./pack.js";
import type { Repository } from "./repository.js";
import type { FileNode, Manifest } from "./snapshot.js";

export function pickComponents(m: Manifest, names: string[] | undefined, id: string): Manifest["components"] {
  if (!names || names.length === 0) return m.components;
  const have = new Set(m.components.map((c) => c.name));
  const unknown = names.filter((n) => !have.has(n));
  if (unknown.length > 0)
    throw new VaultError(
      { code: VaultErrorCode.BadInput, unknown, snapshotId: id },
      `Snapshot ${id} has no component ${unknown.join(", ")}; it has ${[...have].join(", ")}`,
    );
  return m.components.filter((c) => names.includes(c.name));
}

/** Refuses a snapshot whose chunks are not all indexed in stored packs, unless forced. */
export async function preflight(
  repo: Repository,
  index: ChunkIndex,
  snapshotId: string,
  nodes: { f: FileNode }[],
  force: boolean,
  warnings: string[],
): Promise<void> {
  const stored = new Set((await repo.backend.list("data/")).map((o) => o.name));
  let missing = 0;
  let first = "";
  for (const { f } of nodes)
    for (const id of f.chunks ?? []) {
      const loc = index.get(Buffer.from(id, "hex"));
      if (!loc || !stored.has(packObjectName(loc.pack.dataClass, loc.pack.name))) {
        missing++;
        first ||= `${f.path} (chunk ${id.slice(0, 16)})`;
      }
    }
  const last = (await repo.readVerifications()).get(snapshotId);
  const failed = Object.values(last ?? {}).filter((r) => !r.ok);
  const problems = [
    ...(missing > 0 ? [`${missing} chunks are missing from the repository, first in ${first}`] : []),
    ...failed.map((r) => `its last ${r.level} verification (${r.time}) failed: ${r.detail}`),
  ];
  if (problems.length === 0) return;
  if (!force)
    throw new VaultError(
      { code: VaultErrorCode.VerifyFailed, snapshotId, problems },
      `Cannot restore snapshot ${snapshotId}: ${problems.join("; ")}. Restore an older snapshot, or pass --force to write what can be read`,
    );
  for (const p of problems) warnings.push(`FORCED past: ${p}`);
}

/** The top-most paths of a tree: what a restore of these components replaces wholesale. */
export function rootsOf(nodes: readonly FileNode[]): string[] {
  const all = new Set(nodes.map((n) => n.path));
  return nodes
    .map((n) => n.path)
    .filter((p) => {
      const parts = p.split("/");
      for (let i = 1; i < parts.length; i++) if (all.has(parts.slice(0, i).join("/"))) return false;
      return true;
    });
}

/** Every file staged at its size: the pair of the per-chunk checks made while writing. */
export async function checkStaged(
  staging: string,
  nodes: readonly FileNode[],
  id: string,
  force: boolean,
  warnings: string[],
): Promise<void> {
  for (const f of nodes) {
    if (f.type !== "file") continue;
    const s = await stat(join(staging, f.path)).catch(() => undefined);
    if (s?.size === f.sizeBytes) continue;
    const msg = `${f.path} is ${s ? `${s.size} bytes, not ${f.sizeBytes}` : "missing"} in the staged tree`;
    if (!force)
      throw new VaultError(
        { code: VaultErrorCode.VerifyFailed, snapshotId: id, path: f.path },
        `Cannot restore snapshot ${id}: ${msg}`,
      );
    warnings.push(msg);
  }
}

/** A file at the target and its chunks by id, for delta restore. */
export interface LocalChunks {
  fh: Awaited<ReturnType<typeof openFile>>;
  get(id: string): { offset: number; length: number } | undefined;
}

export async function localChunks(
  repo: Repository,
  dataClass: string,
  path: string,
): Promise<LocalChunks | undefined> {
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  const fh = await openFile(path, "r");
  const byId = new Map<string, { offset: number; length: number }>();
  const { idKey } = repo.keysOf(dataClass);
  await forEachChunk(
    fh,
    0,
    repo.config.chunker,
    repo.gear,
    chunkBufferPool(repo.config.chunker, 2),
    (data, offset, release) => {
      byId.set(chunkId(idKey, data).toString("hex"), { offset, length: data.length });
      release();
    },
  );
  return { fh, get: (id) => byId.get(id) };
}
