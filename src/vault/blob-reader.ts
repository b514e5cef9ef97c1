/**
 * Reads chunks back from packs: one range read per blob into a reused buffer, then
 * authenticated under its id and decompressed into another, and for a check also hashed
 * (see buffer-pool.ts for why bulk paths never allocate per chunk).
 */
import { BufferPool } from "./buffer-pool.js";
import type { PackMeta } from "./chunk-index.js";
import { SEAL_OVERHEAD_BYTES } from "./crypto.js";
import type { CryptoWorkers } from "./crypto-workers.js";
import { type PackEntry, packObjectName } from "./pack.js";
import { workerClass } from "./pack-writer.js";
import type { Repository } from "./repository.js";

export class BlobReader {
  private readonly sealedPool: BufferPool;
  private readonly plainPool: BufferPool;

  /** `concurrency`: how many blobs may be in use at once (each holds two buffers). */
  private readonly workers: CryptoWorkers;

  constructor(
    private readonly repo: Repository,
    concurrency: number,
  ) {
    const size = repo.config.chunker.maxBytes + SEAL_OVERHEAD_BYTES;
    this.sealedPool = new BufferPool(size, concurrency, true);
    this.plainPool = new BufferPool(size, concurrency, true);
    this.workers = repo.startCryptoWorkers();
  }

  close(): Promise<void> {
    return this.workers.close();
  }

  /** Reads a blob and checks it, without keeping its chunk: undefined, or why it is damaged. */
  async check(dataClass: string, pack: PackMeta, e: PackEntry): Promise<string | undefined> {
    return this.sealedPool.with(async (sb) => {
      try {
        const sealed = await this.readSealed(pack, e, sb);
        if (!(sealed.buffer instanceof SharedArrayBuffer)) {
          const r = await this.repo.decodeBlob(dataClass, e, sealed);
          return typeof r === "string" ? r : undefined;
        }
        return await this.workers.check(workerClass(dataClass), e, sealed);
      } catch (err) {
        return (err as Error).message;
      }
    });
  }

  private async readSealed(pack: PackMeta, e: PackEntry, sb: Buffer): Promise<Buffer> {
    const name = packObjectName(pack.dataClass, pack.name);
    const b = this.repo.backend;
    return b.getRangeInto && e.length <= sb.length
      ? await b.getRangeInto(name, e.offset, e.length, sb)
      : await b.getRange(name, e.offset, e.length);
  }

  /**
   * Runs `use` with the blob's chunk, or the reason it is damaged (a read error included).
   * The chunk's bytes are valid only until `use` settles. The chunk is authenticated under
   * its id, not hashed again (CryptoWorkers.open says why); {@link check} hashes too.
   */
  async with<T>(
    dataClass: string,
    pack: PackMeta,
    e: PackEntry,
    use: (data: Buffer | string) => Promise<T>,
  ): Promise<T> {
    return this.sealedPool.with((sb) =>
      this.plainPool.with(async (pb) => {
        let data: Buffer | string;
        try {
          const sealed = await this.readSealed(pack, e, sb);
          if (sealed.buffer instanceof SharedArrayBuffer && e.rawLength <= pb.length) {
            const n = await this.workers.open(workerClass(dataClass), e, sealed, pb);
            data = typeof n === "string" ? n : pb.subarray(0, n);
          } else data = await this.repo.decodeBlob(dataClass, e, sealed, undefined, false);
        } catch (err) {
          data = (err as Error).message;
        }
        return use(data);
      }),
    );
  }
}
