/**
 * Backup: read a source's components, cut files into content-defined chunks, store the
 * chunks the repository lacks, and write a signed snapshot. A file whose size and mtime
 * match the parent snapshot is not read at all; a file marked append-only is read only
 * from the parent's last chunk on.
 */
import { hostname } from "node:os";
import { crashPoint } from "../util/crash-points.js";
import { chunkFile, Slots } from "./backup-file.js";
import type { ChunkIndex } from "./chunk-index.js";
import { VaultError, VaultErrorCode } from "./errors.js";
import { chunkBufferPool } from "./file-chunks.js";
import { RepoLock } from "./lock.js";
import { PackWriter } from "./pack-writer.js";
import type { Repository } from "./repository.js";
import type { Component, FileNode, Manifest } from "./snapshot.js";
import { type BackupSource, type SourceEntry, walkComponent } from "./source.js";

export interface BackupOptions {
  tags?: string[];
  /** A snapshot id to compare with; by default the latest of the same source and host. */
  parent?: string;
  /** Ignore any parent: read every file. */
  force?: boolean;
  /** Called as bytes are processed, with the total to process. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** How long to wait for a conflicting lock. */
  lockWaitMs?: number;
  /** Manifest fields to carry over instead of this run's (a copy keeps the original's). */
  carry?: Pick<Manifest, "time" | "host" | "origin">;
}

export interface BackupResult {
  snapshotId: string;
  parent?: string;
  files: { new: number; changed: number; unmodified: number };
  /** Bytes of the source's files. */
  totalBytes: number;
  /** Bytes actually read from the source. */
  readBytes: number;
  chunksAdded: number;
  rawBytesAdded: number;
  storedBytesAdded: number;
  packsWritten: number;
  elapsedMs: number;
}

// New chunks on the crypto workers at once (compressing and sealing): 4 keeps the workers
// fed while the main thread reads, cuts and hashes (8 was no faster), and
// bounds memory to a few read buffers.
const IN_FLIGHT_CHUNKS = 4;

/**
 * Backs up a source into a repository and returns the new snapshot. The repository may
 * still be opening (its key being derived): the source's files are listed meanwhile.
 */
export async function backup(
  opening: Repository | Promise<Repository>,
  source: BackupSource,
  o: BackupOptions = {},
): Promise<BackupResult> {
  const t0 = Date.now();
  const walking = Promise.all(source.components.map(walkComponent));
  // Observed now; a failure is reported where it is awaited, after the repository's own.
  walking.catch(() => undefined);
  const repo = await opening;
  const cleanup: (() => Promise<void>)[] = [];
  let slots: Slots | undefined;
  let writer: PackWriter | undefined;
  const lock = await RepoLock.acquire(repo.backend, {
    exclusive: false,
    op: "backup",
    waitMs: o.lockWaitMs ?? 0,
  });
  try {
    const { index } = await repo.loadIndex();
    cleanup.push(async () => index.close());
    const parent = o.force ? undefined : await findParent(repo, source, o.parent);
    const workers = repo.startCryptoWorkers(true);
    cleanup.push(() => workers.close());
    writer = new PackWriter(repo, workers);
    const walked = await walking;
    const totalBytes = walked.flat().reduce((s, e) => s + e.sizeBytes, 0);
    const r = { files: { new: 0, changed: 0, unmodified: 0 }, readBytes: 0, doneBytes: 0 };
    slots = new Slots(IN_FLIGHT_CHUNKS);
    // One buffer per chunk in flight plus the one being cut.
    const pool = chunkBufferPool(repo.config.chunker, IN_FLIGHT_CHUNKS + 1, true);
    const components: Component[] = [];
    for (const [ci, c] of source.components.entries()) {
      const parentFiles = new Map(
        parent?.manifest.components.find((pc) => pc.name === c.name)?.files.map((f) => [f.path, f]) ?? [],
      );
      const files: FileNode[] = [];
      for (const e of walked[ci]!) {
        const pf = parentFiles.get(e.path);
        if (e.type !== "file") {
          files.push(nodeOf(e, undefined));
          continue;
        }
        if (!pf) r.files.new++;
        if (
          pf &&
          pf.type === "file" &&
          pf.sizeBytes === e.sizeBytes &&
          pf.mtimeMs === e.mtimeMs &&
          allPresent(index, writer, pf)
        ) {
          r.files.unmodified++;
          files.push(nodeOf(e, pf.chunks ?? []));
          r.doneBytes += e.sizeBytes;
          o.onProgress?.(r.doneBytes, totalBytes);
          continue;
        }
        if (pf) r.files.changed++;
        const got = await chunkFile(repo, index, writer, slots, pool, c, e, pf, (n, read) => {
          r.doneBytes += n;
          r.readBytes += read;
          o.onProgress?.(r.doneBytes, totalBytes);
        });
        // The size is what was read: a file that grew while it was read (a log) is
        // recorded as the bytes its chunks hold.
        files.push({ ...nodeOf(e, got.ids), sizeBytes: got.sizeBytes });
      }
      components.push({
        name: c.name,
        dataClass: c.dataClass,
        sizeBytes: files.reduce((s, f) => s + f.sizeBytes, 0),
        files,
      });
    }
    await slots.drain();
    await writer.flush();
    crashPoint("vault.before-snapshot");
    const manifest: Manifest = {
      version: 1,
      time: o.carry?.time ?? new Date().toISOString(),
      host: o.carry?.host ?? hostname(),
      ...(o.carry?.origin ? { origin: o.carry.origin } : {}),
      sourceId: source.sourceId,
      source: source.location,
      tags: o.tags ?? [],
      ...(parent ? { parent: parent.id } : {}),
      ...(source.anchor ? { anchor: source.anchor } : {}),
      components,
    };
    const snapshotId = await repo.writeSnapshot(manifest);
    return {
      snapshotId,
      ...(parent ? { parent: parent.id } : {}),
      files: r.files,
      totalBytes,
      readBytes: r.readBytes,
      ...writer.stats,
      elapsedMs: Date.now() - t0,
    };
  } catch (err) {
    // Nothing half-written outlives a failed backup (a full disk, an unreadable file): the
    // chunks in flight settle and the packs still being filled are given up.
    await slots?.settle();
    await writer?.abort();
    throw err;
  } finally {
    for (const f of cleanup) await f();
    await lock.release();
  }
}

function nodeOf(e: SourceEntry, chunks: string[] | undefined): FileNode {
  return {
    path: e.path,
    type: e.type,
    mode: e.mode,
    mtimeMs: e.mtimeMs,
    sizeBytes: e.sizeBytes,
    ...(chunks ? { chunks } : {}),
    ...(e.target !== undefined ? { target: e.target } : {}),
  };
}

function allPresent(index: ChunkIndex, writer: PackWriter, f: FileNode): boolean {
  for (const id of f.chunks ?? []) {
    const b = Buffer.from(id, "hex");
    if (!index.has(b) && !writer.pending.has(b.toString("latin1"))) return false;
  }
  return true;
}

async function findParent(
  repo: Repository,
  source: BackupSource,
  explicit: string | undefined,
): Promise<{ id: string; manifest: Manifest } | undefined> {
  if (explicit) {
    const s = await repo.resolveSnapshot(explicit);
    if ("problem" in s)
      throw new VaultError(
        { code: VaultErrorCode.ObjectCorrupt, snapshotId: s.id },
        `Cannot use snapshot ${s.id} as parent: ${s.problem}`,
      );
    return s;
  }
  const host = hostname();
  const all = await repo.listSnapshots();
  for (let i = all.length - 1; i >= 0; i--) {
    const s = all[i]!;
    if ("manifest" in s && s.manifest.sourceId === source.sourceId && s.manifest.host === host) return s;
  }
  return undefined;
}
