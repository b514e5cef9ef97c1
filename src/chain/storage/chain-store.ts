/**
 * The node's storage: ledger segments, the state database and the rules that keep them
 * in step. The ledger is the source of truth for blocks and the state is derived from it:
 * a block is validated and applied inside a SQLite transaction, written and fsynced to the
 * ledger, and only then is the transaction committed. After a crash at any instant, open()
 * reverts the state to the highest height the ledger agrees with and replays the ledger
 * from there, so the node restarts into a fully valid chain.
 */
import { randomBytes } from "node:crypto";
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { crashPoint } from "../../util/crash-points.js";
import { CodedError } from "../../util/errors.js";
import { copyFilePrefix, fsyncDir, writeFileAtomic } from "../../util/fs-atomic.js";
import type { Logger } from "../../util/logger.js";
import { Mutex } from "../../util/mutex.js";
import { decodeBlock, encodeBlock, HEADER_BYTES } from "../block.js";
import { CheckPool } from "../check-pool.js";
import { blockWeight, isBetterTip } from "../consensus.js";
import { hex, sha256 } from "../crypto.js";
import { Reader, Writer } from "../encoding.js";
import type { Genesis } from "../genesis.js";
import { BLOCK_BYTES_MAX, type Block, type BlockHeader, type ChainTip } from "../types.js";
import {
  applyTxs,
  BlockError,
  type Changes,
  checkBody,
  checkHeader,
  checkLinks,
  checkStateRoot,
  type Execution,
  executeBlock,
  type HeaderCheckOptions,
  type ParentRef,
  StateOverlay,
} from "../validate.js";
import { type LedgerItem, LedgerStore, type SegmentInfo } from "./ledger-store.js";
import { type Commit, StateStore } from "./state-store.js";

export enum ChainStoreErrorCode {
  NotBetter = "CHAIN_REORG_NOT_BETTER",
  Mismatch = "CHAIN_STATE_LEDGER_MISMATCH",
  BelowUndo = "CHAIN_BELOW_UNDO_DEPTH",
}

export class ChainStoreError extends CodedError<ChainStoreErrorCode> {}

export interface ChainStoreOptions {
  /** The node's data directory; the store uses `ledger/`, `state/` and `checkpoints/` in it. */
  dataDir: string;
  /** Size at which a ledger segment is sealed. */
  segmentBytes: number;
  /** Blocks of undo history kept; 0 keeps all. */
  undoDepth: number;
}

// 64 MiB: large enough that a 2 GiB ledger is ~32 files, small enough to rebuild one fast.
export const SEGMENT_BYTES_DEFAULT = 64 * 1024 * 1024;

/** A block with the values storage derives from it once. */
export interface ImportedBlock {
  block: Block;
  bytes: Buffer;
  hash: Buffer;
}

/**
 * What storage keeps of a block once it is executed: header, bytes and hash. An import
 * holds a batch this way until it writes it, so the batch's decoded transactions are
 * garbage as soon as each block is executed (young, and cheap for the collector).
 */
export interface StoredBlock {
  block: { header: BlockHeader };
  bytes: Buffer;
  hash: Buffer;
}

export function prepareBlock(block: Block, bytes?: Buffer): ImportedBlock {
  const b = bytes ?? encodeBlock(block);
  // The header is the first HEADER_BYTES of the encoding: hash those bytes, do not re-encode.
  return { block, bytes: b, hash: sha256(b.subarray(0, HEADER_BYTES)) };
}

/** A consistent, read-only copy of the node's data at one height, for backups. */
export interface Checkpoint {
  id: string;
  dir: string;
  height: number;
  headHash: string;
  stateRoot: string;
  createdAtMs: number;
  files: { path: string; sizeBytes: number; sealed: boolean }[];
}

/** Options of {@link ChainStore.importBlocks}. */
export interface ImportOptions extends HeaderCheckOptions {
  /** Skip signature checks: only for blocks this process signed itself or built offline. */
  trustedSignatures?: boolean;
  /** The checks already started with {@link startBlockChecks}, for pipelining. */
  signatures?: Promise<unknown>;
}

/**
 * Starts the stateless checks of blocks (body, signatures) on the check workers. The
 * promise resolves to the first error found, or undefined; it never rejects, so it can
 * wait unobserved.
 */
export function startBlockChecks(genesis: Genesis, blocks: Buffer[]): Promise<unknown> {
  return CheckPool.for(genesis)
    .check(blocks)
    .catch((err: unknown) => err);
}

export class ChainStore {
  readonly ledger: LedgerStore;
  readonly state: StateStore;
  private readonly mutex = new Mutex();

  private constructor(
    readonly genesis: Genesis,
    readonly opts: ChainStoreOptions,
    private readonly logger: Logger,
  ) {
    const n = genesis.validatorCount;
    mkdirSync(join(opts.dataDir, "state"), { recursive: true });
    // The state first: its head is the height the ledger is known to hold (ledger-first commit).
    this.state = new StateStore(join(opts.dataDir, "state", "state.db"), genesis);
    try {
      this.ledger = LedgerStore.open(
        {
          dir: join(opts.dataDir, "ledger"),
          segmentBytes: opts.segmentBytes,
          weightOf: (h, p) => blockWeight(h, p, n),
          // Heights above an interrupted reorganisation's fork point are being rewritten:
          // a torn record there is the reorg's own unfinished write, which the journal redoes.
          committedHeight: Math.min(
            this.state.head?.height ?? 0,
            readReorgJournal(join(opts.dataDir, "ledger", REORG_JOURNAL))?.ancestor ??
              Number.MAX_SAFE_INTEGER,
          ),
        },
        logger,
      );
    } catch (err) {
      this.state.close();
      throw err;
    }
  }

  /** Opens the store and brings state and ledger into agreement (see the module comment). */
  static open(genesis: Genesis, opts: ChainStoreOptions, logger: Logger): ChainStore {
    const s = new ChainStore(genesis, opts, logger);
    s.recover();
    return s;
  }

  /** The chain's tip as fork choice sees it. */
  tip(): ChainTip {
    const e = this.ledger.tip;
    return e
      ? { height: this.ledger.tipHeight, hash: e.hash, weight: e.weight }
      : { height: 0, hash: this.genesis.hash, weight: 0n };
  }

  /** Height, hash and timestamp of a block on the chain, genesis included. */
  ref(height: number): ParentRef | undefined {
    if (height === 0)
      return { height: 0, hash: this.genesis.hash, timestampMs: this.genesis.doc.genesisTimeMs };
    const e = this.ledger.entry(height);
    return e ? { height, hash: e.hash, timestampMs: e.timestampMs } : undefined;
  }

  hashAt(height: number): Buffer | undefined {
    return this.ref(height)?.hash;
  }

  get stateRoot(): Buffer {
    return this.state.ltHash.root();
  }

  readBlock(height: number): Block {
    return decodeBlock(this.ledger.readBlockBytes(height));
  }

  private get journalPath(): string {
    return join(this.opts.dataDir, "ledger", REORG_JOURNAL);
  }

  /** Finishes a reorganisation that a crash interrupted after its journal was written. */
  private redoReorg(): void {
    const j = readReorgJournal(this.journalPath);
    if (!j) return;
    const at = this.ref(j.ancestor);
    if (!at?.hash.equals(j.ancestorHash)) {
      // The ledger no longer holds the ancestor: the journal is stale; the normal recovery applies.
      this.logger.warn(
        { ancestor: j.ancestor },
        "Discarding a reorganisation journal that does not match the ledger",
      );
    } else {
      this.logger.warn(
        { ancestor: j.ancestor, blocks: j.blocks.length },
        "Finishing a reorganisation interrupted by a crash",
      );
      this.ledger.truncate(j.ancestor);
      this.ledger.append(j.blocks.map((b) => this.ledgerItem(b)));
    }
    rmSync(this.journalPath, { force: true });
  }

  private recover(): void {
    this.redoReorg();
    const ledgerTip = this.ledger.tipHeight;
    let h = Math.min(this.state.head?.height ?? 0, ledgerTip);
    // Highest height at which the state's record of the chain matches the ledger.
    while (h > 0 && !this.state.appliedAt(h)?.hash.equals(this.ledger.entry(h)!.hash)) h--;
    const stateHead = this.state.head?.height ?? 0;
    if (stateHead > h) {
      const low = this.state.lowestRevertible();
      if (low === undefined || low > h + 1) {
        throw new ChainStoreError(
          {
            code: ChainStoreErrorCode.Mismatch,
            stateHeight: stateHead,
            ledgerHeight: ledgerTip,
            agreeHeight: h,
          },
          `Cannot open ${this.opts.dataDir}: the state is at ${stateHead} but agrees with the ledger only up to ${h}, below the undo history; restore the state from a backup`,
        );
      }
      this.logger.warn({ from: stateHead, to: h }, "Reverting state to the height the ledger agrees with");
      this.state.transaction(() => {
        while ((this.state.head?.height ?? 0) > h) this.state.revertHead();
      });
    }
    if (ledgerTip > h) {
      this.logger.info({ from: h + 1, to: ledgerTip }, "Replaying ledger blocks into the state");
      for (let height = h + 1; height <= ledgerTip; height++) {
        const bytes = this.ledger.readBlockBytes(height);
        const block = decodeBlock(bytes);
        const parent = this.ref(height - 1)!;
        try {
          checkHeader(this.genesis, parent, block);
          this.state.transaction(() => this.applyToState(prepareBlock(block, bytes)));
        } catch (err) {
          // A block the ledger holds but that does not apply was never committed: cut it.
          this.logger.warn(
            { height, err: (err as Error).message },
            "Ledger block does not apply; truncating the ledger below it",
          );
          this.ledger.truncate(height - 1);
          break;
        }
      }
    }
  }

  private applyToState(ib: ImportedBlock): void {
    this.writeExecuted([{ ib, ex: executeBlock(this.state, this.state.ltHash, ib.block) }]);
  }

  /** Writes blocks already executed and checked, in chain order, to the state. Call inside a transaction. */
  private writeExecuted(items: { ib: StoredBlock; ex: Commit }[]): void {
    if (items.length === 0) return;
    let weight = this.state.head?.weight ?? 0n;
    const blocks = items.map(({ ib, ex }) => {
      const h = ib.block.header;
      weight += blockWeight(h.height, h.proposer, this.genesis.validatorCount);
      return { block: { height: h.height, hash: ib.hash, weight }, ex };
    });
    this.state.applyMany(blocks, true);
    if (this.opts.undoDepth > 0)
      this.state.pruneUndo(blocks[blocks.length - 1]!.block.height - this.opts.undoDepth);
  }

  private ledgerItem(ib: StoredBlock): LedgerItem {
    return ledgerItemOf(ib, this.genesis.validatorCount);
  }

  /**
   * Validates and appends blocks that extend the tip. Blocks before the first invalid one
   * are kept; the invalid one's error is thrown. The blocks are linked and executed here,
   * in order, against an overlay of the state; signatures and the commitment's hashing
   * run on the check workers meanwhile; then the valid prefix is written in one transaction.
   */
  importBlocks(blocks: ImportedBlock[], opts: ImportOptions = {}): Promise<number> {
    return this.importRun(
      blocks.map((b) => b.bytes),
      (i) => blocks[i]!,
      opts,
    );
  }

  /**
   * {@link importBlocks} for blocks as a peer sent them: each is decoded only when the
   * import reaches it, and only its header is kept once it is executed. A block that does
   * not decode fails like an invalid one (the blocks before it are kept).
   */
  importEncoded(bytes: Buffer[], opts: ImportOptions = {}): Promise<number> {
    return this.importRun(bytes, (i) => prepareBlock(decodeBlock(bytes[i]!), bytes[i]), opts);
  }

  private importRun(
    bytes: Buffer[],
    blockAt: (i: number) => ImportedBlock,
    opts: ImportOptions,
  ): Promise<number> {
    // The checks start before the mutex is taken, so they overlap the import ahead.
    const checks = opts.trustedSignatures
      ? Promise.resolve(undefined)
      : (opts.signatures ?? startBlockChecks(this.genesis, bytes));
    return this.mutex.run(async () => {
      if (bytes.length === 0) return 0;
      let parent = this.ref(this.ledger.tipHeight)!;
      // The first block's links before anything else: a stale or foreign block fails here.
      const first = blockAt(0);
      checkLinks(this.genesis, parent, first.block, opts);
      const view = new StateOverlay(this.state);
      const executed: { ib: StoredBlock; changes: Changes }[] = [];
      let failure: unknown;
      for (let i = 0; i < bytes.length; i++) {
        try {
          const ib = i === 0 ? first : blockAt(i);
          checkLinks(this.genesis, parent, ib.block, opts);
          // Own blocks skip the workers' checks; their body is still checked here.
          if (opts.trustedSignatures) checkBody(this.genesis, ib.block);
          const { changes } = applyTxs(view, ib.block.header.height, ib.block.txs);
          view.set(changes);
          // The header, not the block: its transactions are done with.
          executed.push({
            ib: { block: { header: ib.block.header }, bytes: ib.bytes, hash: ib.hash },
            changes,
          });
          parent = {
            height: ib.block.header.height,
            hash: ib.hash,
            timestampMs: ib.block.header.timestampMs,
          };
        } catch (err) {
          failure = err;
          break;
        }
      }
      const deltas = await CheckPool.for(this.genesis).deltas(executed.map((e) => e.changes));
      const checkError = await checks;
      if (checkError !== undefined && !(checkError instanceof BlockError)) throw checkError;
      const valid: { ib: StoredBlock; ex: Commit }[] = [];
      let lt = this.state.ltHash;
      for (let i = 0; i < executed.length; i++) {
        const { ib, changes } = executed[i]!;
        if (checkError?.height === ib.block.header.height) {
          failure = checkError;
          break;
        }
        lt = lt.clone();
        lt.addLanes(deltas[i]!);
        const stateRoot = lt.root();
        try {
          checkStateRoot(ib.block.header, stateRoot);
        } catch (err) {
          failure = err;
          break;
        }
        valid.push({ ib, ex: { changes, ltHash: lt, stateRoot } });
      }
      this.state.transaction(() => {
        this.writeExecuted(valid);
        // Durable in the ledger before the state commits: see the module comment.
        this.ledger.append(valid.map((v) => this.ledgerItem(v.ib)));
        crashPoint("chain.import.after-ledger-append");
      });
      if (failure) throw failure;
      return valid.length;
    });
  }

  /**
   * Appends blocks this process built and executed itself (the ledger generator), using
   * the executions it already has instead of validating again. Never for outside blocks.
   */
  appendBuilt(items: { ib: ImportedBlock; ex: Execution }[]): Promise<void> {
    return this.mutex.run(() => {
      this.state.transaction(() => {
        this.writeExecuted(items);
        this.ledger.append(items.map((x) => this.ledgerItem(x.ib)));
      });
    });
  }

  /**
   * Replaces the blocks above `ancestor` with `blocks`, if the result is a better chain by
   * the fork-choice rule. All of it happens, or none of it.
   */
  reorg(ancestor: number, blocks: ImportedBlock[], opts: HeaderCheckOptions = {}): Promise<void> {
    return this.mutex.run(async () => {
      const oldTip = this.tip();
      const low = this.state.lowestRevertible();
      if (ancestor < oldTip.height && (low === undefined || low > ancestor + 1)) {
        throw new ChainStoreError(
          { code: ChainStoreErrorCode.BelowUndo, ancestor },
          `Cannot reorganise to ancestor ${ancestor}: undo history starts at ${low ?? "none"}; resync this node from a backup`,
        );
      }
      const checkError = await startBlockChecks(
        this.genesis,
        blocks.map((b) => b.bytes),
      );
      if (checkError) throw checkError;
      this.state.transaction(() => {
        while ((this.state.head?.height ?? 0) > ancestor) this.state.revertHead();
        let parent = this.ref(ancestor)!;
        for (const ib of blocks) {
          checkHeader(this.genesis, parent, ib.block, opts);
          this.applyToState(ib);
          parent = {
            height: ib.block.header.height,
            hash: ib.hash,
            timestampMs: ib.block.header.timestampMs,
          };
        }
        const head = this.state.head!;
        const newTip: ChainTip = { height: head.height, hash: head.hash, weight: head.weight };
        if (!isBetterTip(newTip, oldTip)) {
          throw new ChainStoreError(
            { code: ChainStoreErrorCode.NotBetter, height: newTip.height },
            `Refusing reorganisation to ${hex(newTip.hash).slice(0, 16)} at ${newTip.height}: weight ${newTip.weight} does not beat ${oldTip.weight}`,
          );
        }
        // The new branch is made durable in a journal before the ledger is cut, so a crash
        // between the cut and the append is finished on restart (redo), never left half-way.
        writeReorgJournal(this.journalPath, ancestor, this.ref(ancestor)!.hash, blocks);
        crashPoint("chain.reorg.after-journal");
        this.ledger.truncate(ancestor);
        crashPoint("chain.reorg.after-truncate");
        this.ledger.append(blocks.map((b) => this.ledgerItem(b)));
      });
      rmSync(this.journalPath, { force: true });
      this.logger.warn({ ancestor, from: oldTip.height, to: this.tip().height }, "Chain reorganised");
    });
  }

  /** Rolls the chain back to `height` (ledger and state). */
  rollback(height: number): Promise<void> {
    return this.mutex.run(() => {
      this.state.transaction(() => {
        while ((this.state.head?.height ?? 0) > height) this.state.revertHead();
        this.ledger.truncate(height);
      });
    });
  }

  /**
   * Writes a consistent, read-only copy of the data at the current height into
   * `checkpoints/<id>`: hard links to sealed segments (never modified in place), a copy
   * of the active segment's committed prefix, the index prefix and a VACUUM INTO of the
   * state. Block production waits only for the few milliseconds it takes.
   */
  checkpoint(): Promise<Checkpoint> {
    return this.mutex.run(() => {
      const createdAtMs = Date.now();
      const tip = this.tip();
      const id = `cp-${tip.height}-${createdAtMs}-${randomBytes(3).toString("hex")}`;
      const dir = join(this.opts.dataDir, "checkpoints", id);
      mkdirSync(join(dir, "ledger"), { recursive: true });
      mkdirSync(join(dir, "state"), { recursive: true });
      const files: Checkpoint["files"] = [];
      for (const s of this.ledger.segments()) {
        const dst = join(dir, "ledger", s.path.split("/").pop()!);
        if (s.sealed) linkSync(s.path, dst);
        else copyFilePrefix(s.path, dst, s.sizeBytes);
        files.push({ path: `ledger/${s.path.split("/").pop()}`, sizeBytes: s.sizeBytes, sealed: s.sealed });
      }
      const idxBytes = 16 + tip.height * 64;
      copyFilePrefix(
        join(this.opts.dataDir, "ledger", "heights.idx"),
        join(dir, "ledger", "heights.idx"),
        idxBytes,
      );
      files.push({ path: "ledger/heights.idx", sizeBytes: idxBytes, sealed: false });
      const statePath = join(dir, "state", "state.db");
      this.state.snapshotTo(statePath);
      fsyncDir(statePath);
      files.push({ path: "state/state.db", sizeBytes: statSync(statePath).size, sealed: false });
      // The genesis travels with the data: the copy names the chain it belongs to.
      writeFileAtomic(join(dir, "genesis.json"), `${JSON.stringify(this.genesis.doc, null, 2)}\n`);
      files.push({
        path: "genesis.json",
        sizeBytes: statSync(join(dir, "genesis.json")).size,
        sealed: false,
      });
      fsyncDir(join(dir, "ledger"));
      fsyncDir(join(dir, "state"));
      const cp: Checkpoint = {
        id,
        dir,
        height: tip.height,
        headHash: hex(tip.hash),
        stateRoot: hex(this.stateRoot),
        createdAtMs,
        files,
      };
      writeFileAtomic(join(dir, "checkpoint.json"), `${JSON.stringify(cp, null, 2)}\n`);
      return cp;
    });
  }

  /** Deletes a checkpoint directory made by {@link checkpoint}. */
  releaseCheckpoint(id: string): boolean {
    if (!/^cp-\d+-\d+-[0-9a-f]{6}$/.test(id))
      throw new TypeError(`Invalid checkpoint id ${JSON.stringify(id)}`);
    const dir = join(this.opts.dataDir, "checkpoints", id);
    if (!existsSync(dir)) return false;
    rmSync(dir, { recursive: true, force: true });
    return true;
  }

  /** The segment files, for tests and tools. */
  segments(): SegmentInfo[] {
    return this.ledger.segments();
  }

  /** Waits for any import in progress, then closes the files. */
  close(): Promise<void> {
    return this.mutex.run(() => {
      this.ledger.close();
      this.state.close();
    });
  }
}

/** The ledger item a chain store appends for a block: its bytes and what the index keeps. */
export function ledgerItemOf(ib: StoredBlock, validatorCount: number): LedgerItem {
  const h = ib.block.header;
  return {
    height: h.height,
    bytes: ib.bytes,
    hash: ib.hash,
    timestampMs: h.timestampMs,
    weight: blockWeight(h.height, h.proposer, validatorCount),
  };
}

/** Name of the redo journal a reorganisation writes before it cuts the ledger. */
export const REORG_JOURNAL = "reorg.journal";

function writeReorgJournal(
  path: string,
  ancestor: number,
  ancestorHash: Buffer,
  blocks: ImportedBlock[],
): void {
  const w = new Writer(1024)
    .bytes16(Buffer.from("chainvault/reorg/v1"))
    .u64(BigInt(ancestor))
    .fixed(ancestorHash, 32)
    .u32(blocks.length);
  for (const b of blocks) w.bytes32(b.bytes);
  const body = w.finish();
  writeFileAtomic(path, Buffer.concat([sha256(body), body]));
}

function readReorgJournal(
  path: string,
): { ancestor: number; ancestorHash: Buffer; blocks: ImportedBlock[] } | undefined {
  if (!existsSync(path)) return undefined;
  const raw = readFileSync(path);
  const body = raw.subarray(32);
  if (raw.length < 32 || !sha256(body).equals(raw.subarray(0, 32))) return undefined;
  const r = new Reader(body, "reorg journal");
  r.bytes16();
  const ancestor = Number(r.u64());
  const ancestorHash = Buffer.from(r.fixed(32));
  const n = r.u32();
  const blocks: ImportedBlock[] = [];
  for (let i = 0; i < n; i++) {
    const bytes = Buffer.from(r.bytes32(BLOCK_BYTES_MAX));
    blocks.push(prepareBlock(decodeBlock(bytes), bytes));
  }
  return { ancestor, ancestorHash, blocks };
}
