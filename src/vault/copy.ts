/**
 * `copy`: snapshots from one repository into another (off-site). The destination has its
 * own keys and chunker, so files are read back from the source chunk by chunk (each
 * authenticated and hashed) and backed up into the destination as a new snapshot with the
 * original's time, host, tags and anchor, and `origin` naming the source snapshot. A
 * snapshot whose origin is already in the destination is skipped.
 */
import { backup } from "./backup.js";
import type { ChunkIndex } from "./chunk-index.js";
import { VaultError, VaultErrorCode } from "./errors.js";
import { RepoLock } from "./lock.js";
import { packObjectName } from "./pack.js";
import type { Repository } from "./repository.js";
import type { FileNode, Manifest } from "./snapshot.js";
import type { ReadHandle, SourceEntry } from "./source.js";

export interface CopyResult {
  copied: { from: string; to: string }[];
  skipped: string[];
}

export async function copySnapshots(from: Repository, to: Repository, refs?: string[]): Promise<CopyResult> {
  // A shared lock on the source: a prune there must not delete packs this copy still reads.
  const lock = await RepoLock.acquire(from.backend, { exclusive: false, op: "copy" });
  const { index } = await from.loadIndex();
  try {
    return await copyLocked(from, index, to, refs);
  } finally {
    index.close();
    await lock.release();
  }
}

async function copyLocked(
  from: Repository,
  index: ChunkIndex,
  to: Repository,
  refs?: string[],
): Promise<CopyResult> {
  const all = await from.listSnapshots();
  const wanted = refs ? await Promise.all(refs.map((r) => from.resolveSnapshot(r))) : all;
  const there = new Set(
    (await to.listSnapshots()).flatMap((s) =>
      "manifest" in s && s.manifest.origin ? [s.manifest.origin] : [],
    ),
  );
  const out: CopyResult = { copied: [], skipped: [] };
  for (const s of wanted) {
    if ("problem" in s)
      throw new VaultError(
        { code: VaultErrorCode.ObjectCorrupt, snapshotId: s.id },
        `Cannot copy snapshot ${s.id}: ${s.problem}`,
      );
    if (there.has(s.id)) {
      out.skipped.push(s.id);
      continue;
    }
    const m = s.manifest;
    const r = await backup(
      to,
      {
        sourceId: m.sourceId,
        location: m.source,
        ...(m.anchor ? { anchor: m.anchor } : {}),
        components: m.components.map((c) => ({
          name: c.name,
          dataClass: c.dataClass,
          rootDir: "",
          include: [],
          entries: c.files.map((f) => entryOf(from, index, c.dataClass, f)),
        })),
      },
      { tags: m.tags, force: true, carry: { time: m.time, host: m.host, origin: s.id } },
    );
    out.copied.push({ from: s.id, to: r.snapshotId });
  }
  return out;
}

function entryOf(repo: Repository, index: ChunkIndex, dataClass: string, f: FileNode): SourceEntry {
  return {
    path: f.path,
    absPath: f.path,
    type: f.type,
    mode: f.mode,
    mtimeMs: f.mtimeMs,
    sizeBytes: f.sizeBytes,
    ...(f.target !== undefined ? { target: f.target } : {}),
    ...(f.type === "file" ? { open: async () => chunkReader(repo, index, dataClass, f) } : {}),
  };
}

/** Reads a stored file front to back, one authenticated chunk at a time. */
function chunkReader(repo: Repository, index: ChunkIndex, dataClass: string, f: FileNode): ReadHandle {
  const ids = f.chunks ?? [];
  let i = 0;
  let chunkStart = 0;
  let current: Buffer | undefined;
  const load = async (): Promise<Buffer> => {
    const id = ids[i]!;
    const loc = index.get(Buffer.from(id, "hex"));
    if (!loc)
      throw new VaultError(
        { code: VaultErrorCode.ObjectMissing, chunk: id },
        `Cannot copy ${f.path}: chunk ${id.slice(0, 16)} is missing from ${repo.backend.location}`,
      );
    const e = loc.entry;
    const sealed = await repo.backend.getRange(
      packObjectName(loc.pack.dataClass, loc.pack.name),
      e.offset,
      e.length,
    );
    const data = await repo.decodeBlob(dataClass, e, sealed);
    if (typeof data === "string")
      throw new VaultError(
        { code: VaultErrorCode.ObjectCorrupt, chunk: id },
        `Cannot copy ${f.path}: chunk ${id.slice(0, 16)} ${data}`,
      );
    return data;
  };
  return {
    async read(buf, offset, length, position) {
      let n = 0;
      while (n < length && i < ids.length) {
        current ??= await load();
        const within = position + n - chunkStart;
        if (within >= current.length) {
          chunkStart += current.length;
          current = undefined;
          i++;
          continue;
        }
        n += current.copy(buf, offset + n, within, Math.min(current.length, within + length - n));
      }
      return { bytesRead: n };
    },
    async close() {},
  };
}

export type { Manifest };
