/**
 * A running node: block production for a validator, peer polling, sync and fork choice,
 * and the mempool. Storage and validation live in ChainStore; HTTP in http-api.ts; taking
 * blocks from peers (announcements, sync, reorganisation) in peer-sync.ts.
 */

import { crashPoint } from "../util/crash-points.js";
import { errorMessage, isNoSpace } from "../util/errors.js";
import type { Logger } from "../util/logger.js";
import { decodeBlock, encodeBlock, sealBlock, txRootOf } from "./block.js";
import { type FetchedBlock, NodeClient } from "./client.js";
import { earliestTimestamp, isBetterTip, proposerRank } from "./consensus.js";
import type { KeyPair } from "./crypto.js";
import { hex, verifySync } from "./crypto.js";
import type { Genesis } from "./genesis.js";
import { Mempool } from "./mempool.js";
import type { ChainMetrics } from "./metrics.js";
import { type PeerState, PeerSync } from "./peer-sync.js";
import { type ChainStore, type ImportedBlock, prepareBlock } from "./storage/chain-store.js";
import { txSigningMessage } from "./tx.js";
import type { Transaction } from "./types.js";
import { executeTxs } from "./validate.js";
import type { Watermark } from "./watermark.js";

export interface ChainNodeOptions {
  nodeId: string;
  selfUrl: string;
  peers: string[];
  peerPollMs: number;
  /** The validator's key and its index in the genesis list; absent for a non-validating node. */
  validator?: { key: KeyPair; index: number; name: string };
  /** How long a peer that sent an invalid block is ignored. */
  peerBanMs?: number;
}

export interface ChainNodeModules {
  store: ChainStore;
  logger: Logger;
  metrics: ChainMetrics;
  watermark?: Watermark;
}

// The signature field of a block recorded with the watermark before it is signed.
const UNSIGNED = Buffer.alloc(64);

// 1 s: how often a node whose disk is full tries to write a block again.
const DISK_FULL_RETRY_MS = 1000;

/** Since when, and why, the node cannot write its data (see {@link ChainNode.diskFull}). */
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

export class ChainNode {
  readonly mempool = new Mempool();
  private full: DiskFull | undefined;
  private retryAtMs = 0;
  private ownPending: OwnBlock | undefined;
  private peers: PeerState[];
  private timers: NodeJS.Timeout[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly sync: PeerSync;
  private producing = false;
  private paused = false;
  private peersPolled = false;

  constructor(
    readonly opts: ChainNodeOptions,
    private readonly m: ChainNodeModules,
  ) {
    this.peers = opts.peers.map((url) => ({
      client: new NodeClient(url, { selfUrl: opts.selfUrl, timeoutMs: 2000 }),
      tip: undefined,
      reachable: false,
      bannedUntilMs: 0,
    }));
    this.sync = new PeerSync(
      {
        opts,
        store: m.store,
        currentPeers: () => this.peers,
        isStopped: () => this.stopped,
        pollPeers: () => this.pollPeers(),
        afterImport: (blocks, txs) => this.afterImport(blocks, txs),
        onWriteFailure: (err) => this.onWriteFailure(err),
        lagBlocks: () => this.lagBlocks(),
      },
      m,
    );
  }

  get store(): ChainStore {
    return this.m.store;
  }

  get genesis(): Genesis {
    return this.m.store.genesis;
  }

  get metricsRegistry(): ChainMetrics["registry"] {
    return this.m.metrics.registry;
  }

  /**
   * Set while the node's disk is full: it keeps serving its chain and retries writing every
   * second, and clears once a block is stored again (/health reports it).
   */
  get diskFull(): DiskFull | undefined {
    return this.full;
  }

  get isSyncing(): boolean {
    return this.sync.isSyncing;
  }

  get isProducing(): boolean {
    return !!this.opts.validator && !this.paused;
  }

  /** Replaces the peer list at run time (partition drills, network recovery). */
  setPeers(urls: string[]): void {
    const keep = new Map(this.peers.map((p) => [p.client.url, p]));
    this.peers = urls.map((url) => keep.get(url.replace(/\/$/, "")) ?? this.newPeer(url));
    this.m.logger.info({ peers: urls }, "Peer list replaced");
  }

  private newPeer(url: string): PeerState {
    return {
      client: new NodeClient(url, { selfUrl: this.opts.selfUrl, timeoutMs: 2000 }),
      tip: undefined,
      reachable: false,
      bannedUntilMs: 0,
    };
  }

  setPaused(paused: boolean): void {
    this.paused = paused;
    this.m.logger.info({ paused }, paused ? "Block production paused" : "Block production resumed");
  }

  start(): void {
    this.m.metrics.height.set(this.store.tip().height);
    this.resumeSigned();
    const poll = (): void => {
      if (this.stopped) return;
      void this.pollPeers()
        .catch((err) => this.m.logger.warn({ err: errorMessage(err) }, "Peer poll failed"))
        .finally(() => {
          if (!this.stopped) this.pollTimer = setTimeout(poll, this.opts.peerPollMs);
        });
    };
    poll();
    if (this.opts.validator) {
      // 20 ms: fine enough that a block goes out within a few percent of its slot.
      this.timers.push(setInterval(() => this.tick(), 20));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    clearTimeout(this.pollTimer);
    this.timers = [];
  }

  lagBlocks(): number {
    const best = Math.max(0, ...this.peers.map((p) => p.tip?.height ?? 0));
    return Math.max(0, best - this.store.tip().height);
  }

  peerView(): { url: string; reachable: boolean; height: number | null; headHash: string | null }[] {
    return this.peers.map((p) => ({
      url: p.client.url,
      reachable: p.reachable,
      height: p.tip?.height ?? null,
      headHash: p.tip ? hex(p.tip.hash) : null,
    }));
  }

  private async pollPeers(): Promise<void> {
    await Promise.all(
      this.peers.map(async (p) => {
        try {
          const s = await p.client.status(1000);
          if (s.genesisHash !== hex(this.genesis.hash)) {
            p.reachable = false;
            return;
          }
          p.tip = { height: s.height, hash: Buffer.from(s.headHash, "hex"), weight: BigInt(s.weight) };
          p.reachable = true;
        } catch {
          p.reachable = false;
        }
      }),
    );
    this.peersPolled = true;
    this.m.metrics.peersReachable.set(this.peers.filter((p) => p.reachable).length);
    this.m.metrics.lagBlocks.set(this.lagBlocks());
    const best = this.bestPeer();
    if (best) await this.sync.syncFrom(best);
  }

  private bestPeer(): PeerState | undefined {
    const now = Date.now();
    let best: PeerState | undefined;
    for (const p of this.peers) {
      if (!p.reachable || !p.tip || p.bannedUntilMs > now) continue;
      if (!best || isBetterTip(p.tip, best.tip!)) best = p;
    }
    return best && isBetterTip(best.tip!, this.store.tip()) ? best : undefined;
  }

  private tick(): void {
    if (this.stopped || this.paused || this.producing || this.sync.isSyncing || !this.peersPolled) return;
    const v = this.opts.validator!;
    const tip = this.store.tip();
    if (this.bestPeer()) return;
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
  private resumeSigned(): void {
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
    this.afterImport(1, txs);
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
  private onWriteFailure(err: unknown, height?: number): void {
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

  private afterImport(blocks: number, txs: number): void {
    if (this.full) {
      this.m.logger.info(
        { pausedMs: Date.now() - this.full.sinceMs },
        "Disk space available again: blocks are being written",
      );
      this.full = undefined;
    }
    const store = this.store;
    this.mempool.prune((pk) => store.state.getAccount(pk));
    this.m.metrics.height.set(store.tip().height);
    this.m.metrics.blocksImported.inc(blocks);
    this.m.metrics.txsImported.inc(txs);
    this.m.metrics.mempoolTxs.set(this.mempool.size);
  }

  /** Handles a block a peer announced. Throws BlockError if it is invalid. */
  async onAnnounce(
    fetched: FetchedBlock,
    fromUrl: string | undefined,
  ): Promise<"imported" | "known" | "syncing"> {
    return this.sync.onAnnounce(fetched, fromUrl);
  }

  /** Adds a transaction from a client or a peer; gossips it on if it is new. */
  submitTx(tx: Transaction, gossip: boolean): { accepted: boolean; reason?: string } {
    if (!verifySync(tx.from, txSigningMessage(this.genesis.hash, tx), tx.signature))
      return { accepted: false, reason: "signature does not verify" };
    const acct = this.store.state.getAccount(tx.from);
    if (tx.nonce < (acct?.nonce ?? 0n))
      return { accepted: false, reason: `nonce ${tx.nonce} is below the account nonce ${acct?.nonce ?? 0n}` };
    if (!this.mempool.add(tx)) return { accepted: false, reason: "already pending or the mempool is full" };
    this.m.metrics.mempoolTxs.set(this.mempool.size);
    if (gossip) {
      for (const p of this.peers) p.client.forwardTx(tx).catch(() => undefined);
    }
    return { accepted: true };
  }
}
