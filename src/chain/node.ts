/**
 * A running node: block production for a validator, peer polling, sync and fork choice,
 * and the mempool. Storage and validation live in ChainStore; HTTP in http-api.ts.
 */

import { errorMessage } from "../util/errors.js";
import type { Logger } from "../util/logger.js";
import { declaredHeaderFields, sealBlock, txRootOf } from "./block.js";
import { type FetchedBlock, NodeClient } from "./client.js";
import { earliestTimestamp, isBetterTip, proposerRank } from "./consensus.js";
import type { KeyPair } from "./crypto.js";
import { hex, verifySync } from "./crypto.js";
import type { Genesis } from "./genesis.js";
import { Mempool } from "./mempool.js";
import type { ChainMetrics } from "./metrics.js";
import { type ChainStore, prepareBlock, startBlockChecks } from "./storage/chain-store.js";
import { txSigningMessage } from "./tx.js";
import type { ChainTip, Transaction } from "./types.js";
import { BlockError, BlockErrorCode, executeTxs } from "./validate.js";
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

interface PeerState {
  client: NodeClient;
  tip: ChainTip | undefined;
  reachable: boolean;
  bannedUntilMs: number;
}

// 256 blocks per range request: bounded memory per batch and enough to keep all cores busy verifying.
const SYNC_BATCH_BLOCKS = 256;
// 3 batches ahead: enough queued verification to cover a fetch and an import; bounds memory
// to a few batches of at most 16 MiB each.
const SYNC_AHEAD_BATCHES = 3;
// 10,000 blocks: the deepest fork resolved automatically; deeper needs an operator (ledger fork tools).
const REORG_BLOCKS_MAX = 10_000;
// 64 hashes: the window checked first when looking for a fork point, since forks are usually shallow.
const ANCESTOR_WINDOW = 64;

export class ChainNode {
  readonly mempool = new Mempool();
  private peers: PeerState[];
  private timers: NodeJS.Timeout[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private syncing = false;
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

  get isSyncing(): boolean {
    return this.syncing;
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
    if (best) await this.syncFrom(best);
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
    if (this.stopped || this.paused || this.producing || this.syncing || !this.peersPolled) return;
    const v = this.opts.validator!;
    const tip = this.store.tip();
    if (this.bestPeer()) return;
    const height = tip.height + 1;
    if ((this.m.watermark?.height ?? 0) >= height) return;
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
      .catch((err) => this.m.logger.warn({ height, err: errorMessage(err) }, "Block production failed"))
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
    // Durable before the signature exists: a crash after this line can never lead to a second signature at this height.
    this.m.watermark?.advance(height);
    const block = sealBlock(this.genesis.hash, v.key.privateKey, header, ex.included);
    const ib = prepareBlock(block);
    await store.importBlocks([ib], { trustedSignatures: true });
    this.afterImport(1, ex.included.length);
    this.m.metrics.blocksProduced.inc();
    this.m.logger.debug({ height, txs: ex.included.length, hash: hex(ib.hash) }, "Block produced");
    for (const p of this.peers) {
      p.client.announce(ib.bytes).catch(() => {
        // A peer that misses an announcement catches up by polling.
      });
    }
  }

  private afterImport(blocks: number, txs: number): void {
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
    const h = fetched.block.header;
    const tip = this.store.tip();
    const ib = prepareBlock(fetched.block, fetched.bytes);
    if (h.height <= tip.height && this.store.hashAt(h.height)?.equals(ib.hash)) return "known";
    if (h.height === tip.height + 1 && h.prevHash.equals(tip.hash)) {
      try {
        await this.store.importBlocks([ib], { nowMs: Date.now() });
      } catch (err) {
        if (!this.isStale(err, tip)) {
          this.onInvalid(err, fromUrl);
          throw err;
        }
        // Another block took the tip while this one waited for the store (ours, or one
        // from another peer): this one is stale, not invalid, and its sender keeps its standing.
        if (this.store.hashAt(h.height)?.equals(ib.hash)) return "known";
        return this.catchUpWith(fromUrl);
      }
      this.afterImport(1, fetched.block.txs.length);
      return "imported";
    }
    return this.catchUpWith(fromUrl);
  }

  /** Whether an import failed only because the tip moved past `tip` before it ran. */
  private isStale(err: unknown, tip: ChainTip): boolean {
    return (
      err instanceof BlockError &&
      (err.code === BlockErrorCode.BadHeight || err.code === BlockErrorCode.BadParent) &&
      !this.store.tip().hash.equals(tip.hash)
    );
  }

  /** A peer announced a block that does not extend our tip: poll peers, so fork choice and sync can act. */
  private catchUpWith(fromUrl: string | undefined): "syncing" {
    const peer = this.peers.find((p) => p.client.url === fromUrl);
    if (peer && !this.syncing) {
      this.pollPeers().catch(() => undefined);
    }
    return "syncing";
  }

  private onInvalid(err: unknown, fromUrl: string | undefined): void {
    if (!(err instanceof BlockError)) return;
    this.m.metrics.blocksRejected.inc({ reason: err.code });
    this.m.logger.warn(
      { peer: fromUrl, height: err.height, code: err.code, reason: err.message },
      "Refused an invalid block from a peer",
    );
    const peer = this.peers.find((p) => p.client.url === fromUrl);
    if (peer) peer.bannedUntilMs = Date.now() + (this.opts.peerBanMs ?? 30_000);
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

  private async syncFrom(peer: PeerState): Promise<void> {
    if (this.syncing || this.stopped) return;
    this.syncing = true;
    const client = peer.client;
    let ours = this.store.tip();
    try {
      while (!this.stopped && peer.tip && isBetterTip(peer.tip, this.store.tip())) {
        ours = this.store.tip();
        const ancestor = await this.findAncestor(client, Math.min(ours.height, peer.tip.height));
        if (ancestor === ours.height) {
          const imported = await this.fetchForward(client, ours.height + 1, peer.tip.height);
          if (imported === 0) break;
        } else {
          await this.reorgTo(client, ancestor, peer.tip.height);
        }
        const s = await client.status(2000);
        peer.tip = { height: s.height, hash: Buffer.from(s.headHash, "hex"), weight: BigInt(s.weight) };
      }
    } catch (err) {
      // A range that no longer fits because our tip moved meanwhile (an announced block or
      // our own landed) is stale, not invalid: the next poll syncs again.
      if (err instanceof BlockError && !this.isStale(err, ours)) this.onInvalid(err, client.url);
      else this.m.logger.debug({ peer: client.url, err: errorMessage(err) }, "Sync from peer stopped");
    } finally {
      this.syncing = false;
      this.m.metrics.lagBlocks.set(this.lagBlocks());
    }
  }

  /** Highest height at which our chain and the peer's agree. */
  private async findAncestor(client: NodeClient, maxHeight: number): Promise<number> {
    if (maxHeight === 0) return 0;
    const ourHash = (h: number): string => hex(this.store.hashAt(h)!);
    const lo0 = Math.max(1, maxHeight - ANCESTOR_WINDOW + 1);
    const window = await client.hashes(lo0, maxHeight);
    for (let h = maxHeight; h >= lo0; h--) {
      if (window[h - lo0] === ourHash(h)) return h;
    }
    // Binary search below the window: agreement holds on a prefix of heights.
    let lo = 0;
    let hi = lo0;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      const [theirs] = await client.hashes(mid, mid);
      if (theirs === ourHash(mid)) lo = mid;
      else hi = mid;
    }
    return lo;
  }

  /** Imports blocks from..to from a peer, fetching the next batch while the current one imports. */
  private async fetchForward(client: NodeClient, from: number, to: number): Promise<number> {
    // Stages overlap: up to SYNC_AHEAD_BATCHES batches are fetched and have their
    // signatures verifying on the thread pool while the current one is applied on the
    // main thread, so the pool never waits for the network or for the state.
    // A batch waits as the peer's bytes and is decoded only when its turn comes.
    type Stage = {
      from: number;
      to: number;
      result: Promise<{ bytes: Buffer[]; sigs: Promise<unknown> }>;
    };
    const stage = (a: number, b: number): Stage => {
      const result = client.blockBytes(a, b).then((bytes) => ({
        bytes,
        sigs: startBlockChecks(this.genesis, bytes),
      }));
      result.catch(() => undefined);
      return { from: a, to: b, result };
    };
    const queue: Stage[] = [];
    let nextFrom = from;
    const fill = (): void => {
      while (queue.length < SYNC_AHEAD_BATCHES && nextFrom <= to) {
        const b = Math.min(to, nextFrom + SYNC_BATCH_BLOCKS - 1);
        queue.push(stage(nextFrom, b));
        nextFrom = b + 1;
      }
    };
    let total = 0;
    fill();
    while (queue.length > 0 && !this.stopped) {
      const current = queue.shift()!;
      const { bytes, sigs } = await current.result;
      if (bytes.length === 0) break;
      // The header's own word on its height, before decoding: the import decodes each
      // block when it reaches it (and refuses one whose bytes say otherwise).
      const last = declaredHeaderFields(bytes[bytes.length - 1]!).height;
      if (last < current.to) {
        // The peer sent fewer blocks than asked (its byte bound): re-plan from the gap.
        queue.length = 0;
        nextFrom = last + 1;
      }
      fill();
      const imported = await this.store.importEncoded(bytes, { nowMs: Date.now(), signatures: sigs });
      total += imported;
      this.afterImport(
        imported,
        bytes.reduce((s, b) => s + declaredHeaderFields(b).txCount, 0),
      );
    }
    return total;
  }

  private async reorgTo(client: NodeClient, ancestor: number, peerHeight: number): Promise<void> {
    if (peerHeight - ancestor > REORG_BLOCKS_MAX) {
      this.m.logger.error(
        { peer: client.url, ancestor, peerHeight },
        "Fork deeper than the automatic reorganisation limit; resolve it with the ledger fork tools",
      );
      throw new Error("fork too deep");
    }
    const blocks: FetchedBlock[] = [];
    for (let from = ancestor + 1; from <= peerHeight; ) {
      const batch = await client.blocks(from, Math.min(peerHeight, from + SYNC_BATCH_BLOCKS - 1));
      if (batch.length === 0) break;
      blocks.push(...batch);
      from = batch[batch.length - 1]!.block.header.height + 1;
    }
    await this.store.reorg(
      ancestor,
      blocks.map((b) => prepareBlock(b.block, b.bytes)),
      { nowMs: Date.now() },
    );
    this.m.metrics.reorgs.inc();
    this.afterImport(
      blocks.length,
      blocks.reduce((s, b) => s + b.block.txs.length, 0),
    );
  }
}
