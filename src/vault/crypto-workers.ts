/**
 * Chunk sealing and opening on worker threads, so a backup or a restore uses every core:
 * a backup's main thread reads, cuts, computes chunk ids (HMAC-SHA256) and writes; the
 * workers compress (zstd), encrypt and decrypt (AES-256-GCM), and for verification hash.
 * Chunk bytes never get copied between threads: jobs name ranges of SharedArrayBuffers
 * from the callers' buffer pools.
 *
 * The worker's own code is in crypto-worker-source.ts; its sealing and opening follow
 * crypto.ts byte for byte (test/unit/vault-crypto-workers.test.ts checks each opens what
 * the other seals).
 */
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { WORKER_SOURCE } from "./crypto-worker-source.js";

/** A class's keys as the workers need them. */
export interface ClassKeys {
  dataKey: Uint8Array;
  idKey: Uint8Array;
}

type Job =
  | {
      t: "seal";
      cls: string;
      id: Uint8Array;
      buf: SharedArrayBuffer;
      off: number;
      len: number;
      out: SharedArrayBuffer;
      level: number;
    }
  | {
      t: "open";
      cls: string;
      id: Uint8Array;
      flags: number;
      rawLength: number;
      /** Also hash the plaintext against the id (verification), not only authenticate it. */
      rehash: boolean;
      buf: SharedArrayBuffer;
      off: number;
      len: number;
      /** Absent: open into the worker's own scratch buffers, only to check the blob. */
      out?: SharedArrayBuffer;
    };

interface Reply {
  j: number;
  err?: string;
  len?: number;
  flags?: number;
}

/** A shared view's backing store and range, for a job. */
function rangeOf(b: Buffer): { buf: SharedArrayBuffer; off: number; len: number } {
  if (!(b.buffer instanceof SharedArrayBuffer))
    throw new TypeError(
      "Crypto worker jobs need buffers backed by a SharedArrayBuffer (BufferPool with shared: true)",
    );
  return { buf: b.buffer, off: b.byteOffset, len: b.length };
}

/**
 * Worker threads for {@link CryptoWorkers}: one per core, but one fewer when the main thread
 * has bulk work of its own (a backup reads and cuts there), and at most 4.
 */
export function cryptoThreads(mainThreadBusy: boolean): number {
  const cores = Math.min(4, availableParallelism());
  return Math.max(1, mainThreadBusy ? cores - 1 : cores);
}

function bootWorker(): Worker {
  const zstdPath = createRequire(import.meta.url).resolve("zstd-napi/binding.js");
  // A small young generation: the workers keep almost nothing on their JS heaps.
  const w = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { zstdPath },
    resourceLimits: { maxYoungGenerationSizeMb: 4 },
  });
  w.unref();
  return w;
}

// Workers booted ahead of need (see prewarm), with the first error each reported, if any.
const spares: { w: Worker; failed: boolean }[] = [];

export class CryptoWorkers {
  private readonly workers: Worker[] = [];
  private readonly busy: number[] = [];
  private readonly waiting = new Map<
    number,
    { resolve: (r: Reply) => void; reject: (e: Error) => void; w: number }
  >();
  private nextJob = 0;
  private failure: Error | undefined;

  /**
   * Boots the workers a command will ask for ({@link cryptoThreads}) now, without keys, for
   * the next CryptoWorkers to adopt. Booting one (an isolate, this source, the zstd addon)
   * takes ~0.1 s on a small machine; a command calls this before the passphrase's key
   * derivation, so the two overlap.
   */
  static prewarm(mainThreadBusy: boolean): void {
    const threads = cryptoThreads(mainThreadBusy);
    while (spares.length < threads) {
      const spare = { w: bootWorker(), failed: false };
      spare.w.on("error", () => {
        spare.failed = true;
      });
      spares.push(spare);
    }
  }

  constructor(keys: Record<string, ClassKeys>, threads = cryptoThreads(false)) {
    for (let i = 0; i < threads; i++) {
      let spare = spares.shift();
      while (spare?.failed) {
        void spare.w.terminate();
        spare = spares.shift();
      }
      const w = spare?.w ?? bootWorker();
      w.removeAllListeners("error");
      // The keys go first on the worker's queue: every job is posted after them.
      w.postMessage({ t: "keys", keys });
      w.on("message", (r: Reply) => {
        const p = this.waiting.get(r.j);
        if (!p) return;
        this.waiting.delete(r.j);
        this.busy[p.w]!--;
        p.resolve(r);
      });
      w.on("error", (err) => this.fail(err));
      w.on("exit", (code) => {
        if (code !== 0) this.fail(new Error(`A crypto worker exited with code ${code}`));
      });
      this.workers.push(w);
      this.busy.push(0);
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.waiting.values()) p.reject(err);
    this.waiting.clear();
  }

  private run(job: Job): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    let w = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.busy[i]! < this.busy[w]!) w = i;
    const j = this.nextJob++;
    this.busy[w]!++;
    return new Promise<Reply>((resolve, reject) => {
      this.waiting.set(j, { resolve, reject, w });
      this.workers[w]!.postMessage({ ...job, j });
    });
  }

  /**
   * Compresses `data` (unless its first 64 KiB show it does not pay) and seals it into
   * `out`; returns the sealed length and the blob's flags.
   */
  async seal(
    cls: string,
    id: Buffer,
    data: Buffer,
    out: Buffer,
    level: number,
  ): Promise<{ len: number; flags: number }> {
    const o = rangeOf(out);
    if (o.off !== 0) throw new TypeError("A seal output must start its shared buffer");
    const r = await this.run({ t: "seal", cls, id, ...rangeOf(data), out: o.buf, level });
    if (r.err || r.len === undefined)
      throw new Error(`Cannot seal chunk ${id.toString("hex").slice(0, 16)}: ${r.err}`);
    return { len: r.len, flags: r.flags ?? 0 };
  }

  /**
   * Opens a sealed blob into `out`: authenticates it under its id, decompresses if flagged,
   * checks the length. Returns the chunk's length, or why it is damaged.
   *
   * The plaintext is not hashed again: the id is the blob's associated data, so a blob that
   * authenticates was sealed for this id by a holder of the data key, and only a key holder
   * can make a blob whose plaintext does not hash to its id (a writer bug; `check`, which
   * verification uses, still finds that). Hashing would double a restore's CPU.
   */
  async open(
    cls: string,
    e: { id: Buffer; flags: number; rawLength: number },
    sealed: Buffer,
    out: Buffer,
  ): Promise<number | string> {
    const o = rangeOf(out);
    if (o.off !== 0) throw new TypeError("An open output must start its shared buffer");
    const r = await this.openJob(cls, e, sealed, false, o.buf);
    return r.err ?? r.len ?? "was not opened";
  }

  /**
   * Checks a sealed blob as {@link open} does (authenticates, decompresses, checks the
   * length), and also that its plaintext hashes to its id, without handing the chunk back:
   * the worker opens it into its own scratch buffers, so a verification needs no buffer per
   * blob for the plaintext.
   */
  async check(
    cls: string,
    e: { id: Buffer; flags: number; rawLength: number },
    sealed: Buffer,
  ): Promise<string | undefined> {
    return (await this.openJob(cls, e, sealed, true)).err;
  }

  private openJob(
    cls: string,
    e: { id: Buffer; flags: number; rawLength: number },
    sealed: Buffer,
    rehash: boolean,
    out?: SharedArrayBuffer,
  ): Promise<Reply> {
    return this.run({
      t: "open",
      cls,
      id: e.id,
      flags: e.flags,
      rawLength: e.rawLength,
      rehash,
      ...rangeOf(sealed),
      ...(out ? { out } : {}),
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
