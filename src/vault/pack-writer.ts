/**
 * Turns new chunks into stored packs: compress (zstd, on the libuv thread pool), seal,
 * append to the open pack of the chunk's class, store full packs, and write an index
 * object for what was stored. Packs are written before the index that names them and the
 * index before any snapshot that uses it, so a crash leaves only unreferenced packs.
 */
import { compress } from "@mongodb-js/zstd";
import { crashPoint } from "../util/crash-points.js";
import { BufferPool } from "./buffer-pool.js";
import { encodeIndex, newIndexName, type PackInfo } from "./chunk-index.js";
import { SEAL_OVERHEAD_BYTES, sealInto } from "./crypto.js";
import { FLAG_COMPRESSED, PackBuilder, packObjectName } from "./pack.js";
import type { Repository } from "./repository.js";

// Compressed output must save at least 3% or the chunk is stored raw: incompressible
// data (signatures, hashes) then costs no decompression on restore.
const MIN_SAVING = 0.97;
// 64 KiB probe at zstd level 1: a chunk whose first 64 KiB do not compress is stored raw
// without compressing the rest. Chain data is mostly signatures and hashes, so this saves
// most of the compression work; data that compresses (state pages, logs) is unaffected.
const PROBE_BYTES = 64 * 1024;
// 32 packs (512 MiB): an index object is written at least this often during a long backup,
// so a backup run again after a crash finds the chunks already stored.
const INDEX_FLUSH_PACKS = 32;

export interface PackWriterStats {
  chunksAdded: number;
  rawBytesAdded: number;
  storedBytesAdded: number;
  packsWritten: number;
}

async function compressible(data: Buffer): Promise<boolean> {
  const probe = await compress(data.subarray(0, PROBE_BYTES), 1);
  return probe.length < PROBE_BYTES * MIN_SAVING;
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
  /** Called with each pack once it is stored and indexed. */
  onIndexed: ((p: PackInfo) => void) | undefined;

  // Sealed blobs waiting for their write: 6 lets writes overlap with sealing the next ones.
  private readonly sealPool: BufferPool;

  constructor(private readonly repo: Repository) {
    this.sealPool = new BufferPool(repo.config.chunker.maxBytes + SEAL_OVERHEAD_BYTES, 6);
  }

  /** Compresses and seals a chunk; the caller bounds how many are in flight. */
  async add(dataClass: string, id: Buffer, data: Buffer): Promise<void> {
    const key = id.toString("latin1");
    if (this.pending.has(key)) return;
    this.pending.add(key);
    const level = this.repo.config.compressionLevel;
    let body = data;
    let flags = 0;
    if (level > 0 && (data.length <= 2 * PROBE_BYTES || (await compressible(data)))) {
      const z = await compress(data, level);
      if (z.length < data.length * MIN_SAVING) {
        body = z;
        flags = FLAG_COMPRESSED;
      }
    }
    const out = await this.sealPool.acquire();
    const sealed = out.subarray(0, sealInto(this.repo.keysOf(dataClass).dataKey, body, id, out));
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
    this.throwIfFailed();
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
    for (const p of packs) this.onIndexed?.(p);
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
