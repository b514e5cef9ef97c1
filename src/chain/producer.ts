/**
 * A validator's own block production: when its turn comes (proposer rank and earliest
 * timestamp), build a block from the mempool, advance the signing watermark before the
 * signature exists, sign, store and announce it; retry a signed block the disk could not
 * take instead of signing again, and pause writing while the disk is full. The ChainNode
 * owns the tick timer, the peer list, fork choice and the mempool; this module produces.
 */

import { crashPoint } from "../util/crash-points.js";
import { errorMessage, isNoSpace } from "../util/errors.js";
import type { Logger } from "../util/logger.js";
import { decodeBlock, encodeBlock, sealBlock, txRootOf } from "./block.js";
import { earliestTimestamp, proposerRank } from "./consensus.js";
import type { KeyPair } from "./crypto.js";
import { hex } from "./crypto.js";
import type { Genesis } from "./genesis.js";
import type { Mempool } from "./mempool.js";
import type { ChainMetrics } from "./metrics.js";
import type { PeerState } from "./peer-sync.js";
import { type ChainStore, type ImportedBlock, prepareBlock } from "./storage/chain-store.js";
import type { ChainTip } from "./types.js";
import { executeTxs } from "./validate.js";
import type { Watermark } from "./watermark.js";

// The signature field of a block recorded with the watermark before it is signed.
const UNSIGNED = Buffer.alloc(64);

// 1 s: how often a node whose disk is full tries to write a block again.
const DISK_FULL_RETRY_MS = 1000;

/** Since when, and why, the node cannot write its data (node.ts: ChainNode.diskFull). */
export interface DiskFull {
  sinceMs: number;
  error: string;
}

/** A block this validator signed that is not stored yet: retried as is, never signed again. */
interface OwnBlock {
  height: number;
  parentHash: Buffer;
  ib: ImportedBlock;
  txs: number;
}

/** What {@link Producer} needs of the node it works for. */
export interface ProducerHost {
  /** The validator's key and its index in the genesis list; absent for a non-validating node. */
  readonly opts: { readonly validator?: { key: KeyPair; index: number } };
  readonly store: ChainStore;
  readonly mempool: Mempool;
  /** The peer list as it is now (own blocks are announced to it): the node replaces it at run time. */
  currentPeers(): readonly PeerState[];
  afterImport(blocks: number, txs: number): void;
}

/** The modules {@link Producer} uses: the node's logger, metrics and signing watermark. */
export interface ProducerModules {
  logger: Logger;
  metrics: ChainMetrics;
  watermark?: Watermark;
}

/** Produces, stores and announces this validator's own blocks for one ChainNode. */
export class Producer {
  private full: DiskFull | undefined;
  private retryAtMs = 0;
  private ownPending: OwnBlock | undefined;
  private producing = false;

  constructor(
    private readonly node: ProducerHost,
    private readonly m: ProducerModules,
  ) {}

  private get opts(): ProducerHost["opts"] {
    return this.node.opts;
  }

  private get store(): ChainStore {
    return this.node.store;
  }

  private get genesis(): Genesis {
    return this.node.store.genesis;
  }

  private get mempool(): Mempool {
    return this.node.mempool;
  }

  private get peers(): readonly PeerState[] {
    return this.node.currentPeers();
  }

  /** Set while the node's disk is full (see ChainNode.diskFull). */
  get diskFull(): DiskFull | undefined {
    return this.full;
  }

  /** Whether a block of this validator is being produced or stored right now. */
  get busy(): boolean {
    return this.producing;
  }

  /**
   * One production tick on `tip`, once the node has checked it may produce and that no
   * peer has a better chain: retries a signed block not yet stored, or, when this
   * validator's earliest timestamp for the next height has come, produces it.
   */
  tick(tip: ChainTip): void {
    const v = this.opts.validator!;
    const height = tip.height + 1;
    if (Date.now() < this.retryAtMs) return;
    if ((this.m.watermark?.height ?? 0) >= height) {
      // Signed here before and not stored (the disk was full): the same block, not a new signature.
      const own = this.ownPending;
      if (own?.height === height && own.parentHash.equals(tip.hash)) {
        this.producing = true;
        this.storeOwn(own)
          .catch((err) => this.onWriteFailure(err, height))
          .finally(() => {
            this.producing = false;
          });
      }
      return;
    }
    const n = this.genesis.validatorCount;
    const rank = proposerRank(height, v.index, n);
    const parent = this.store.ref(tip.height)!;
    const earliest = earliestTimestamp(
      {
        validatorCount: n,
        blockTimeMs: this.genesis.doc.blockTimeMs,
        outOfTurnDelayMs: this.genesis.doc.outOfTurnDelayMs,
      },
      parent.timestampMs,
      rank,
    );
    const now = Date.now();
    if (now < earliest) return;
    this.producing = true;
    this.produce(height, Math.max(now, earliest))
      .catch((err) => this.onWriteFailure(err, height))
      .finally(() => {
        this.producing = false;
      });
  }

  private async produce(height: number, timestampMs: number): Promise<void> {
    const v = this.opts.validator!;
    const store = this.store;
    const parent = store.ref(height - 1)!;
    const candidates = this.mempool.select(this.genesis.doc.maxTxsPerBlock, (pk) =>
      store.state.getAccount(pk),
    );
    const ex = executeTxs(store.state, store.state.ltHash, height, candidates, { skipInvalid: true });
    const header = {
      height,
      prevHash: parent.hash,
      timestampMs,
      proposer: v.index,
      txRoot: txRootOf(ex.included),
      stateRoot: ex.stateRoot,
      txCount: ex.included.length,
    };
    // Durable before the signature exists: a crash after this line can never lead to a
    // second signature at this height. The block goes with it, unsigned: after such a crash
    // the restart signs this same content (resumeSigned).
    this.m.watermark?.advance(
      height,
      encodeBlock({ header: { ...header, signature: UNSIGNED }, txs: ex.included }),
    );
    crashPoint("node.produce.after-watermark");
    const block = sealBlock(this.genesis.hash, v.key.privateKey, header, ex.included);
    this.ownPending = { height, parentHash: parent.hash, ib: prepareBlock(block), txs: ex.included.length };
    await this.storeOwn(this.ownPending);
  }

  /**
   * After a restart: if the watermark is one above the tip and holds the block that was
   * being signed there, on this tip, that block is signed again (ed25519 is deterministic:
   * the same signature) and stored by the next tick, instead of the height being lost.
   */
  resumeSigned(): void {
    const wm = this.m.watermark;
    const v = this.opts.validator;
    const tip = this.store.tip();
    if (!v || !wm?.pending || wm.height !== tip.height + 1) return;
    let unsigned: ReturnType<typeof decodeBlock>;
    try {
      unsigned = decodeBlock(wm.pending);
    } catch (err) {
      this.m.logger.warn(
        { err: errorMessage(err) },
        "The block recorded with the signing watermark does not decode; not used",
      );
      return;
    }
    const { signature: _, ...header } = unsigned.header;
    if (header.height !== wm.height || header.proposer !== v.index || !header.prevHash.equals(tip.hash))
      return;
    const block = sealBlock(this.genesis.hash, v.key.privateKey, header, unsigned.txs);
    this.ownPending = {
      height: header.height,
      parentHash: tip.hash,
      ib: prepareBlock(block),
      txs: unsigned.txs.length,
    };
    this.m.logger.info(
      { height: header.height },
      "Storing the block this validator was signing when it stopped (signed again: the same signature)",
    );
  }

  /** Stores and announces a block this validator signed. */
  private async storeOwn(own: OwnBlock): Promise<void> {
    const { height, ib, txs } = own;
    await this.store.importBlocks([ib], { trustedSignatures: true });
    this.ownPending = undefined;
    this.node.afterImport(1, txs);
    this.m.metrics.blocksProduced.inc();
    this.m.logger.debug({ height, txs, hash: hex(ib.hash) }, "Block produced");
    for (const p of this.peers) {
      p.client.announce(ib.bytes).catch(() => {
        // A peer that misses an announcement catches up by polling.
      });
    }
  }

  /**
   * A block that could not be written. A full disk pauses writing (retried every second,
   * logged once) instead of failing every 20 ms tick; anything else is logged as before.
   */
  onWriteFailure(err: unknown, height?: number): void {
    if (!isNoSpace(err)) {
      if (height !== undefined)
        this.m.logger.warn({ height, err: errorMessage(err) }, "Block production failed");
      return;
    }
    this.retryAtMs = Date.now() + DISK_FULL_RETRY_MS;
    if (this.full) return;
    this.full = { sinceMs: Date.now(), error: errorMessage(err) };
    this.m.logger.error(
      { height, dataDir: this.store.opts.dataDir, err: this.full.error },
      "Disk full: the node cannot write its data directory; it keeps serving its chain and tries again every second until space is freed (the chain on disk is intact)",
    );
  }

  /** A block was stored (any source): a full disk has space again, so writing resumes. */
  clearDiskFull(): void {
    if (this.full) {
      this.m.logger.info(
        { pausedMs: Date.now() - this.full.sinceMs },
        "Disk space available again: blocks are being written",
      );
      this.full = undefined;
    }
  }
}
