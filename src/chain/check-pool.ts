/**
 * Check workers: the block checks that need no state (decoding, the transaction root,
 * every signature) and the hashing of the state commitment (LtHash deltas) run on worker
 * threads, one per core. The main thread keeps only what must run in chain order: linking
 * each block to its parent, executing its transactions, and writing state and ledger.
 * Sync, import, reorganisation and offline validation all use it.
 *
 * Workers start on demand and stop after a while idle; an idle worker never keeps the
 * process alive. Each worker holds at most two jobs, so a commitment job, which the main
 * thread is waiting on, never queues behind a long line of signature jobs: it goes first.
 * Signature jobs wait in order of height, not of arrival: a sync's range requests overlap
 * and may answer out of order, and the lower range is the one the import needs next.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { declaredHeaderFields } from "./block.js";
import type { CheckJob, CheckReply } from "./check-worker.js";
import type { Genesis } from "./genesis.js";
import { accountLeaf, LANES, LEAF_BYTES, LtHash, writeAccountLeaf } from "./lthash.js";
import { BlockError, BlockErrorCode, type Changes } from "./validate.js";

/**
 * Starts a check worker: the built check-worker.js beside this module, or, when running
 * from the TypeScript sources (the tests, through tsx), check-worker.ts loaded through
 * tsx's loader, which a worker does not inherit from its parent.
 */
function startWorker(workerData: unknown): Worker {
  if (!import.meta.url.endsWith(".ts"))
    return new Worker(new URL("./check-worker.js", import.meta.url), { workerData });
  const tsx = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  const url = JSON.stringify(new URL("./check-worker.ts", import.meta.url).href);
  return new Worker(`import(${tsx}).then((t) => { t.register(); return import(${url}); });`, {
    eval: true,
    workerData,
  });
}
// About 512 signatures per job (~40 ms on one core): replies come often enough to keep
// every worker fed, and each message is small beside the work it carries.
const SIGS_PER_JOB = 512;
// About 2,048 leaves per commitment job, so one block batch is spread over the workers.
const LEAVES_PER_JOB = 2048;
// A commitment this small is hashed on the calling thread: a round trip would cost more.
const INLINE_LEAVES = 64;
const JOBS_PER_WORKER = 2;
// A worker idle this long stops; the next job starts one again (~30 ms).
const IDLE_STOP_MS = 10_000;

interface Pending {
  job: CheckJob;
  /** The height of the job's first block: the queue of checks is kept in this order. */
  height: number;
  transfer: ArrayBuffer[];
  resolve: (r: CheckReply) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  jobs: Map<number, Pending>;
  idle?: NodeJS.Timeout | undefined;
}

export class CheckPool {
  private static readonly pools = new Map<string, CheckPool>();

  /** The pool for a chain, created on first use. */
  static for(genesis: Genesis): CheckPool {
    const key = genesis.hash.toString("hex");
    let pool = CheckPool.pools.get(key);
    if (!pool) {
      pool = new CheckPool(genesis);
      CheckPool.pools.set(key, pool);
    }
    return pool;
  }

  private readonly slots: Slot[] = [];
  private readonly urgent: Pending[] = [];
  private readonly queued: Pending[] = [];
  private nextJob = 0;
  private readonly maxWorkers = availableParallelism();

  private constructor(private readonly genesis: Genesis) {}

  /**
   * Starts every worker now, idle: a node calls this as it opens, so that the workers'
   * start-up (a thread and its modules, ~0.1 s each and more on a busy machine) overlaps
   * its own instead of holding up the first blocks it takes from a peer. Idle workers stop
   * after a while as usual.
   */
  warm(): void {
    while (this.slots.length < this.maxWorkers) this.idleLater(this.start());
  }

  /**
   * Reads each block from its bytes (checkEncodedBlock), checks its body against its
   * header and verifies every signature. Resolves to the error of the first block, in the order given, that
   * fails, or undefined; rejects only if a worker fails.
   */
  async check(blocks: Buffer[]): Promise<BlockError | undefined> {
    const jobs: Promise<BlockError | undefined>[] = [];
    for (let i = 0; i < blocks.length; ) {
      let sigs = 0;
      let size = 0;
      let end = i;
      while (end < blocks.length && (end === i || sigs < SIGS_PER_JOB)) {
        sigs += declaredHeaderFields(blocks[end]!).txCount + 1;
        size += blocks[end]!.length;
        end++;
      }
      jobs.push(this.checkJob(blocks.slice(i, end), size));
      i = end;
    }
    for (const err of await Promise.all(jobs)) if (err) return err;
    return undefined;
  }

  private async checkJob(blocks: Buffer[], size: number): Promise<BlockError | undefined> {
    // One fresh buffer per job, moved to the worker: a view into a larger buffer (a
    // segment read, Node's pool) would be copied whole by postMessage.
    const bytes = new Uint8Array(size);
    const ends = new Uint32Array(blocks.length);
    let at = 0;
    blocks.forEach((b, i) => {
      bytes.set(b, at);
      at += b.length;
      ends[i] = at;
    });
    const height = declaredHeaderFields(blocks[0]!).height;
    const r = await this.run({ t: "check", j: this.nextJob++, bytes, ends }, [bytes.buffer], height);
    if (!("fail" in r) || !r.fail) return undefined;
    const { index, detail, message } = r.fail;
    return new BlockError(
      { code: BlockErrorCode.Decode, height: declaredHeaderFields(blocks[index]!).height, ...detail },
      message,
    );
  }

  /**
   * The LtHash delta of each block's changes: the leaves of the accounts' new values
   * added, those of their old values removed. `lt.addLanes(delta)` moves a commitment
   * across the block.
   */
  async deltas(blocks: Changes[]): Promise<Uint16Array[]> {
    const counts = blocks.map((ch) => {
      let removed = 0;
      for (const c of ch.values()) if (c.before) removed++;
      return { removed, added: ch.size };
    });
    const total = counts.reduce((s, c) => s + c.removed + c.added, 0);
    if (total <= INLINE_LEAVES) return blocks.map(deltaHere);
    const jobs: Promise<Uint16Array[]>[] = [];
    for (let i = 0; i < blocks.length; ) {
      let leaves = 0;
      let end = i;
      while (end < blocks.length && (end === i || leaves < LEAVES_PER_JOB)) {
        leaves += counts[end]!.removed + counts[end]!.added;
        end++;
      }
      jobs.push(this.deltaJob(blocks.slice(i, end), counts.slice(i, end), leaves));
      i = end;
    }
    return (await Promise.all(jobs)).flat();
  }

  private async deltaJob(
    blocks: Changes[],
    counts: { removed: number; added: number }[],
    leaves: number,
  ): Promise<Uint16Array[]> {
    const buf = Buffer.from(new ArrayBuffer(leaves * LEAF_BYTES));
    const cs = new Uint32Array(blocks.length * 2);
    let at = 0;
    blocks.forEach((ch, b) => {
      cs[2 * b] = counts[b]!.removed;
      cs[2 * b + 1] = counts[b]!.added;
      for (const c of ch.values()) {
        if (!c.before) continue;
        writeAccountLeaf(buf, at, c.pubkey, c.before);
        at += LEAF_BYTES;
      }
      for (const c of ch.values()) {
        writeAccountLeaf(buf, at, c.pubkey, c.after);
        at += LEAF_BYTES;
      }
    });
    const r = await this.run({ t: "lt", j: this.nextJob++, leaves: buf, counts: cs }, [
      buf.buffer as ArrayBuffer,
    ]);
    if (!("deltas" in r)) throw new Error("A check worker answered a commitment job without deltas");
    return blocks.map((_, b) => r.deltas.subarray(b * LANES, (b + 1) * LANES));
  }

  /** Queues a job: a commitment job first of all (the main thread waits on it), a check by `height`. */
  private run(job: CheckJob, transfer: ArrayBuffer[], height = 0): Promise<CheckReply> {
    return new Promise((resolve, reject) => {
      const p = { job, transfer, height, resolve, reject };
      if (job.t === "lt") this.urgent.push(p);
      else {
        // After every job of a lower or equal height: a range that arrived early waits
        // for the lower one that arrived late, and equal heights keep their arrival order.
        let at = this.queued.length;
        while (at > 0 && this.queued[at - 1]!.height > height) at--;
        this.queued.splice(at, 0, p);
      }
      this.pump();
    });
  }

  /**
   * Hands queued jobs to workers with room, starting workers up to one per core.
   * Commitment jobs all go to the first worker, in order, so that its expansion cache
   * holds the leaf each account was left at by the block before (half the hashing); the
   * checks go to the least busy worker, but not to the first while a commitment waits.
   */
  private pump(): void {
    for (;;) {
      let posted = false;
      if (this.urgent.length > 0) {
        const first = this.slots[0] ?? this.start();
        if (first.jobs.size < JOBS_PER_WORKER) {
          this.post(first, this.urgent.shift()!);
          posted = true;
        }
      }
      if (this.queued.length > 0) {
        const open = this.urgent.length > 0 ? this.slots.slice(1) : this.slots;
        let slot: Slot | undefined;
        for (const s of open) if (!slot || s.jobs.size < slot.jobs.size) slot = s;
        if ((!slot || slot.jobs.size > 0) && this.slots.length < this.maxWorkers) slot = this.start();
        if (slot && slot.jobs.size < JOBS_PER_WORKER) {
          this.post(slot, this.queued.shift()!);
          posted = true;
        }
      }
      if (!posted) return;
    }
  }

  private post(slot: Slot, p: Pending): void {
    if (slot.idle) clearTimeout(slot.idle);
    slot.idle = undefined;
    if (slot.jobs.size === 0) slot.worker.ref();
    slot.jobs.set(p.job.j, p);
    slot.worker.postMessage(p.job, p.transfer);
  }

  private start(): Slot {
    const worker = startWorker({ genesis: this.genesis.doc });
    const slot: Slot = { worker, jobs: new Map() };
    worker.unref();
    worker.on("message", (r: CheckReply) => {
      const p = slot.jobs.get(r.j);
      if (!p) return;
      slot.jobs.delete(r.j);
      if ("err" in r) p.reject(new Error(`A block check worker failed: ${r.err}`));
      else p.resolve(r);
      if (slot.jobs.size === 0) {
        // Idle: the worker must not keep the process alive, and stops after a while.
        worker.unref();
        this.idleLater(slot);
      }
      this.pump();
    });
    const lost = (err: Error): void => {
      this.remove(slot);
      for (const p of slot.jobs.values()) p.reject(err);
      slot.jobs.clear();
      this.pump();
    };
    worker.on("error", (err) => lost(new Error(`A block check worker failed: ${err.message}`)));
    worker.on("exit", (code) => {
      if (slot.jobs.size > 0) lost(new Error(`A block check worker exited with code ${code}`));
      else this.remove(slot);
    });
    this.slots.push(slot);
    return slot;
  }

  /** Stops an idle worker after a while unless a job comes first. */
  private idleLater(slot: Slot): void {
    slot.idle = setTimeout(() => this.stop(slot), IDLE_STOP_MS).unref();
  }

  private stop(slot: Slot): void {
    if (slot.jobs.size > 0) return;
    this.remove(slot);
    void slot.worker.terminate();
  }

  private remove(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    if (slot.idle) clearTimeout(slot.idle);
  }
}

/** A block's LtHash delta computed on this thread. */
function deltaHere(changes: Changes): Uint16Array {
  const d = new LtHash();
  for (const c of changes.values()) {
    if (c.before) d.remove(accountLeaf(c.pubkey, c.before));
    d.add(accountLeaf(c.pubkey, c.after));
  }
  return d.lanes;
}
