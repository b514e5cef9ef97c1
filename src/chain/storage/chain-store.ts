/**
 * The node's storage: ledger segments, the state database and the rules that keep them
 * in step. The ledger is the source of truth for blocks and the state is derived from it:
 * a block is validated and applied inside a SQLite transaction, written and fsynced to the
 * ledger, and only then is the transaction committed. After a crash at any instant, open()
 * reverts the state to the highest height the ledger agrees with and replays the ledger
 * from there, so the node restarts into a fully valid chain.
 *
 * The parts: block-import.ts (the import pipeline), chain-reorg.ts with reorg-journal.ts
 * (reorganisation and its redo journal), chain-recovery.ts (open), checkpoint.ts; the
 * shared types in chain-types.ts and imported-block.ts.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../util/logger.js";
import { Mutex } from "../../util/mutex.js";
import { decodeBlock } from "../block.js";
import { blockWeight } from "../consensus.js";
import type { Genesis } from "../genesis.js";
import type { Block, ChainTip } from "../types.js";
import type { Execution, HeaderCheckOptions, ParentRef } from "../validate.js";
import {
  commitAppend,
  type ImportOptions,
  importUnderMutex,
  startBlockChecks,
  writeExecuted,
} from "./block-import.js";
import { recoverChain } from "./chain-recovery.js";
import { reorgUnderMutex } from "./chain-reorg.js";
import type { ChainStoreOptions } from "./chain-types.js";
import { type Checkpoint, releaseCheckpoint, writeCheckpoint } from "./checkpoint.js";
import { type ImportedBlock, ledgerItemOf, prepareBlock, type StoredBlock } from "./imported-block.js";
import { type LedgerItem, LedgerStore, type SegmentInfo } from "./ledger-store.js";
import { REORG_JOURNAL, readReorgJournal, reorgJournalPath } from "./reorg-journal.js";
import { StateStore } from "./state-store.js";

export { type ImportOptions, startBlockChecks } from "./block-import.js";
export {
  ChainStoreError,
  ChainStoreErrorCode,
  type ChainStoreOptions,
  SEGMENT_BYTES_DEFAULT,
} from "./chain-types.js";
export type { Checkpoint } from "./checkpoint.js";
export { type ImportedBlock, ledgerItemOf, prepareBlock, type StoredBlock } from "./imported-block.js";
export { REORG_JOURNAL } from "./reorg-journal.js";

export class ChainStore {
  readonly ledger: LedgerStore;
  readonly state: StateStore;
  private readonly mutex = new Mutex();
  /** Why the last write failed half-way, until {@link write} has recovered from it. */
  private unrecovered: unknown;

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
    recoverChain(s, s.logger);
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
    return this.write(() => importUnderMutex(this, bytes, blockAt, opts, checks));
  }

  /**
   * Appends blocks this process built and executed itself (the ledger generator), using
   * the executions it already has instead of validating again. Never for outside blocks.
   */
  appendBuilt(items: { ib: ImportedBlock; ex: Execution }[]): Promise<void> {
    return this.write(() => {
      commitAppend(this, () => {
        writeExecuted(this, items);
        this.ledger.append(items.map((x) => this.ledgerItem(x.ib)));
      });
    });
  }

  /**
   * Replaces the blocks above `ancestor` with `blocks`, if the result is a better chain by
   * the fork-choice rule. All of it happens, or none of it.
   */
  reorg(ancestor: number, blocks: ImportedBlock[], opts: HeaderCheckOptions = {}): Promise<void> {
    return this.write(async () => {
      try {
        await reorgUnderMutex(this, this.logger, ancestor, blocks, opts);
      } catch (err) {
        // Failed after its journal (the ledger cut, the state not committed: a full disk):
        // only the open-time recovery puts ledger and state back in agreement.
        if (existsSync(reorgJournalPath(this.opts.dataDir))) this.unrecovered = err;
        throw err;
      }
    });
  }

  /**
   * Runs a write under the mutex. If an earlier write failed half-way in a way only the
   * open-time recovery repairs, that recovery runs first (re-reading the ledger, finishing
   * the reorganisation from its journal, reverting and replaying the state); if it fails
   * too (the disk is still full), so does this write, and the next one tries again.
   */
  private write<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.mutex.run(async () => {
      if (this.unrecovered !== undefined) {
        this.ledger.reload();
        recoverChain(this, this.logger);
        this.logger.info("Recovered the chain store from a write that had failed half-way");
        this.unrecovered = undefined;
      }
      return fn();
    });
  }

  /** Rolls the chain back to `height` (ledger and state). */
  rollback(height: number): Promise<void> {
    return this.write(() => {
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
    return this.write(() => writeCheckpoint(this));
  }

  /** Deletes a checkpoint directory made by {@link checkpoint}. */
  releaseCheckpoint(id: string): boolean {
    return releaseCheckpoint(this.opts.dataDir, id);
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
