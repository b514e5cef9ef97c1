/**
 * Turns new chunks into stored packs: compress (zstd) and seal on the crypto workers,
 * append to the open pack of the chunk's class, store full packs, and write an index
 * object for what was stored. Packs are written before the index that names them and the
 * index before any snapshot that uses it, so a crash leaves only unreferenced packs.
 */
import { crashPoint } from "../util/crash-points.js";
import { BufferPool } from "./buffer-pool.js";
import { encodeIndex, newIndexName, type PackInfo } from "./chunk-index.js";
import { SEAL_OVERHEAD_BYTES } from "./crypto.js";
import type { CryptoWorkers } from "./crypto-workers.js";
import { PackBuilder, packObjectName } from "./pack.js";
import { KEYS_CLASS, type Repository } from "./repository.js";

// Compression (zstd, skipped where a 64 KiB probe saves < 3%) and sealing run on the crypto
// workers (crypto-workers.ts).
// 32 packs (512 MiB): an index object is written at least this often during a long backup,
// so a backup run again after a crash finds the chunks already stored.
const INDEX_FLUSH_PACKS = 32;

export interface PackWriterStats {
  chunksAdded: number;
  rawBytesAdded: number;
  storedBytesAdded: number;
  packsWritten: number;
}

/** The key set a data class uses on the crypto workers. */
export function workerClass(dataClass: string): string {
  return dataClass === KEYS_CLASS ? KEYS_CLASS : "";
}

export class PackWriter {
  private readonly open = new Map<string, PackBuilder>();
  private readonly storing = new Set<Promise<void>>();
  private unindexed: PackInfo[] = [];
  private failure: unknown;
  readonly stats: PackWriterStats = {
    chunksAdded: 0,
    rawBytesAdded: 0,
    storedBytesAdded: 0,
    packsWritten: 0,
  };
  /** Ids (latin1) of chunks added by this writer and not yet in the repository's index. */
  readonly pending = new Set<string>();

  // Sealed blobs waiting for their write: 3 lets writes overlap with sealing the next ones.
  private readonly sealPool: BufferPool;

  constructor(
    private readonly repo: Repository,
    private readonly workers: CryptoWorkers,
  ) {
    this.sealPool = new BufferPool(repo.config.chunker.maxBytes + SEAL_OVERHEAD_BYTES, 3, true);
  }

  /** Compresses and seals a chunk; the caller bounds how many are in flight. */
  async add(dataClass: string, id: Buffer, data: Buffer): Promise<void> {
    const key = id.toString("latin1");
    if (this.pending.has(key)) return;
    this.pending.add(key);
    const out = await this.sealPool.acquire();
    let sealed: Buffer;
    let flags: number;
    try {
      const r = await this.workers.seal(
        workerClass(dataClass),
        id,
        data,
        out,
        this.repo.config.compressionLevel,
      );
      sealed = out.subarray(0, r.len);
      flags = r.flags;
    } catch (err) {
      this.sealPool.release(out);
      throw err;
    }
    let pack = this.open.get(dataClass);
    if (!pack) {
      const b = this.repo.backend;
      pack = new PackBuilder(dataClass, b.openWriter ? (name) => b.openWriter!(name) : undefined);
      this.open.set(dataClass, pack);
    }
    void pack.add(id, sealed, data.length, flags).finally(() => this.sealPool.release(out));
    this.stats.chunksAdded++;
    this.stats.rawBytesAdded += data.length;
    this.stats.storedBytesAdded += sealed.length;
    if (pack.sizeBytes >= this.repo.config.packTargetBytes) {
      this.open.delete(dataClass);
      await this.store(pack);
    }
  }

  /** Stores a full pack; at most two are stored at once, the rest wait (bounds memory). */
  private async store(pack: PackBuilder): Promise<void> {
    while (this.storing.size >= 2) await Promise.race(this.storing);
    if (this.failure) {
      // Out of `open` already: given up here, or its temporary object would outlive us.
      await pack.abort();
      throw this.failure;
    }
    const key = this.repo.keysOf(pack.dataClass).dataKey;
    let sizeBytes = 0;
    const stored = pack.streaming
      ? pack.commit(key).then((n) => {
          sizeBytes = n;
        })
      : (() => {
          const f = pack.finish(key);
          sizeBytes = f.sizeBytes;
          return this.repo.backend.put(packObjectName(pack.dataClass, pack.name), f.parts);
        })();
    const p = stored
      .then(async () => {
        this.stats.packsWritten++;
        this.unindexed.push({ name: pack.name, dataClass: pack.dataClass, sizeBytes, entries: pack.entries });
        if (this.unindexed.length >= INDEX_FLUSH_PACKS) await this.writeIndex();
      })
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => this.storing.delete(p));
    this.storing.add(p);
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  private async writeIndex(): Promise<void> {
    if (this.unindexed.length === 0) return;
    const packs = this.unindexed;
    this.unindexed = [];
    crashPoint("vault.before-index");
    await this.repo.backend.put(newIndexName(), encodeIndex(this.repo.master.dataKey, packs));
  }

  /**
   * After a failure (a full disk, a read error): gives up the packs still being filled, so
   * their temporary objects do not outlive the backup, and waits for those being stored
   * (each removes its own on failure; one that completes is unreferenced, and prune deletes
   * it). Nothing is indexed. A no-op after {@link flush}.
   */
  async abort(): Promise<void> {
    const open = [...this.open.values()];
    this.open.clear();
    await Promise.allSettled([...open.map((p) => p.abort()), ...this.storing]);
  }

  /** Stores every open pack and indexes everything stored. */
  async flush(): Promise<void> {
    for (const pack of [...this.open.values()]) {
      this.open.delete(pack.dataClass);
      if (pack.entries.length > 0) await this.store(pack);
    }
    while (this.storing.size > 0) await Promise.race(this.storing);
    this.throwIfFailed();
    await this.writeIndex();
  }
}
