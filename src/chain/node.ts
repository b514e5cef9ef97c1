/**
 * A running node: peer polling, sync and fork choice, the mempool, and the tick that lets a
 * validator produce. Storage and validation live in ChainStore; HTTP in http-api.ts; taking
 * blocks from peers (announcements, sync, reorganisation) in peer-sync.ts; the validator's
 * own block production (watermark, signing, storing, a full disk) in producer.ts.
 */

import { errorMessage } from "../util/errors.js";
import type { Logger } from "../util/logger.js";
import { type FetchedBlock, NodeClient } from "./client.js";
import { isBetterTip } from "./consensus.js";
import type { KeyPair } from "./crypto.js";
import { hex, verifySync } from "./crypto.js";
import type { Genesis } from "./genesis.js";
import { Mempool } from "./mempool.js";
import type { ChainMetrics } from "./metrics.js";
import { type PeerState, PeerSync } from "./peer-sync.js";
import { type DiskFull, Producer } from "./producer.js";
import type { ChainStore } from "./storage/chain-store.js";
import { txSigningMessage } from "./tx.js";
import type { Transaction } from "./types.js";
import type { Watermark } from "./watermark.js";

export type { DiskFull } from "./producer.js";

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

export class ChainNode {
  readonly mempool = new Mempool();
  private peers: PeerState[];
  private timers: NodeJS.Timeout[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly sync: PeerSync;
  private readonly producer: Producer;
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
        onWriteFailure: (err) => this.producer.onWriteFailure(err),
        lagBlocks: () => this.lagBlocks(),
      },
      m,
    );
    this.producer = new Producer(
      {
        opts,
        store: m.store,
        mempool: this.mempool,
        currentPeers: () => this.peers,
        afterImport: (blocks, txs) => this.afterImport(blocks, txs),
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
    return this.producer.diskFull;
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
    this.producer.resumeSigned();
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
    if (this.stopped || this.paused || this.producer.busy || this.sync.isSyncing || !this.peersPolled) return;
    const tip = this.store.tip();
    if (this.bestPeer()) return;
    this.producer.tick(tip);
  }

  private afterImport(blocks: number, txs: number): void {
    this.producer.clearDiskFull();
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
