/**
 * Backup of one file: cut it into content-defined chunks from the start, or for an
 * append-only file from the end of the parent's reusable prefix, and hand the chunks the
 * repository lacks to the pack writer through a bounded number of slots. backup.ts calls
 * this for each file the parent snapshot does not already cover.
 */
import { open as openFile } from "node:fs/promises";
import type { BufferPool } from "./buffer-pool.js";
import type { ChunkIndex } from "./chunk-index.js";
import { chunkId } from "./crypto.js";
import { VaultError, VaultErrorCode } from "./errors.js";
import { forEachChunk } from "./file-chunks.js";
import type { PackWriter } from "./pack-writer.js";
import type { Repository } from "./repository.js";
import type { FileNode } from "./snapshot.js";
import type { ReadHandle, SourceComponent, SourceEntry } from "./source.js";

/** A counting semaphore that also remembers the first failure of the work it ran. */
export class Slots {
  private running = new Set<Promise<void>>();
  private failure: unknown;
  constructor(private readonly limit: number) {}

  async run(work: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.limit) await Promise.race(this.running);
    if (this.failure) throw this.failure;
    const p = work()
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => this.running.delete(p));
    this.running.add(p);
  }

  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.race(this.running);
    if (this.failure) throw this.failure;
  }

  /** Waits for the work still running, whatever its outcome (after a failure, before cleaning up). */
  async settle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }
}

/**
 * Chunks one file from `start` (0, or the end of the parent's reusable prefix) and hands
 * new chunks to the writer; returns the file's chunk ids.
 */
export async function chunkFile(
  repo: Repository,
  index: ChunkIndex,
  writer: PackWriter,
  slots: Slots,
  pool: BufferPool,
  c: SourceComponent,
  e: SourceEntry,
  pf: FileNode | undefined,
  progress: (doneBytes: number, readBytes: number) => void,
): Promise<{ ids: string[]; sizeBytes: number }> {
  const { idKey } = repo.keysOf(c.dataClass);
  const fh: ReadHandle = e.open
    ? await e.open()
    : await openFile(e.absPath, "r").catch((err: unknown) => {
        throw new VaultError(
          { code: VaultErrorCode.BadInput, path: e.absPath },
          `Cannot read ${e.absPath} of component ${c.name}: ${(err as Error).message}`,
        );
      });
  try {
    const ids: string[] = [];
    let pos = 0;
    let sizeBytes = 0;
    if (pf?.chunks && pf.chunks.length > 1 && c.appendOnly?.(e.path) && pf.sizeBytes <= e.sizeBytes) {
      const reuse = await reusablePrefix(index, fh, idKey, pf.chunks);
      if (reuse) {
        ids.push(...reuse.ids);
        pos = reuse.bytes;
        sizeBytes = pos;
        progress(pos, reuse.checkedBytes);
      }
    }
    await forEachChunk(
      fh,
      pos,
      repo.config.chunker,
      repo.gear,
      pool,
      async (data, offset, release) => {
        sizeBytes = offset + data.length;
        // The id here, on the reading thread, which has time to spare beside the crypto
        // worker's compression and encryption (the backup's critical path); a chunk the
        // repository already holds then never reaches the worker at all.
        const id = chunkId(idKey, data);
        ids.push(id.toString("hex"));
        if (index.has(id) || writer.pending.has(id.toString("latin1"))) {
          release();
          return;
        }
        await slots.run(async () => {
          try {
            await writer.add(c.dataClass, id, data);
          } finally {
            release();
          }
        });
      },
      (n) => progress(n, n),
    );
    // Every chunk's id must be known before the file's entry is complete.
    await slots.drain();
    return { ids, sizeBytes };
  } finally {
    await fh.close();
  }
}

/**
 * The parent's chunks that an append-only file still holds: all but the last (which may
 * have been cut by the old end of file), provided the last of those reads back unchanged.
 */
async function reusablePrefix(
  index: ChunkIndex,
  fh: ReadHandle,
  idKey: Buffer,
  chunks: string[],
): Promise<{ ids: string[]; bytes: number; checkedBytes: number } | undefined> {
  const keep = chunks.slice(0, -1);
  let bytes = 0;
  let lastLen = 0;
  for (const id of keep) {
    const loc = index.get(Buffer.from(id, "hex"));
    if (!loc) return undefined;
    lastLen = loc.entry.rawLength;
    bytes += lastLen;
  }
  const check = Buffer.allocUnsafe(lastLen);
  const { bytesRead } = await fh.read(check, 0, lastLen, bytes - lastLen);
  if (bytesRead !== lastLen || chunkId(idKey, check).toString("hex") !== keep.at(-1)) return undefined;
  return { ids: keep, bytes, checkedBytes: lastLen };
}
