/**
 * How a node takes blocks from its peers: a block a peer announces, and sync from the best
 * peer (find the fork point, fetch forward in overlapping batches, or reorganise onto a
 * heavier fork). An invalid block is refused and its sender ignored for a while. The ChainNode
 * owns the peer list, the polling and the mempool; this module imports what peers send.
 */

import { errorMessage } from "../util/errors.js";
import type { Logger } from "../util/logger.js";
import { declaredHeaderFields } from "./block.js";
import type { FetchedBlock, NodeClient } from "./client.js";
import { isBetterTip } from "./consensus.js";
import { hex } from "./crypto.js";
import type { Genesis } from "./genesis.js";
import type { ChainMetrics } from "./metrics.js";
import { type ChainStore, prepareBlock, startBlockChecks } from "./storage/chain-store.js";
import type { ChainTip } from "./types.js";
import { BlockError, BlockErrorCode } from "./validate.js";

/** A peer as the node sees it: its client, its last polled tip, and whether it is set aside. */
export interface PeerState {
  client: NodeClient;
  tip: ChainTip | undefined;
  reachable: boolean;
  bannedUntilMs: number;
}
// 256 blocks per range request: bounded memory per batch and enough to keep all cores busy verifying.
const SYNC_BATCH_BLOCKS = 256;
// 32 blocks in the first range request, doubling up to a full batch: the workers get their
// first signatures after a small fetch, not after a full one they would sit idle through.
const SYNC_FIRST_BATCH_BLOCKS = 32;
// 3 batches ahead: enough queued verification to cover a fetch and an import; bounds memory
// to a few batches of at most 16 MiB each.
const SYNC_AHEAD_BATCHES = 3;
// 10,000 blocks: the deepest fork resolved automatically; deeper needs an operator (ledger fork tools).
const REORG_BLOCKS_MAX = 10_000;
// 64 hashes: the window checked first when looking for a fork point, since forks are usually shallow.
const ANCESTOR_WINDOW = 64;
/** What {@link PeerSync} needs of the node it works for. */
export interface PeerSyncHost {
  readonly opts: { readonly peerBanMs?: number };
  readonly store: ChainStore;
  /** The peer list as it is now: the node replaces it at run time (setPeers). */
  currentPeers(): readonly PeerState[];
  isStopped(): boolean;
  pollPeers(): Promise<void>;
  afterImport(blocks: number, txs: number): void;
  /** A block could not be written (a full disk pauses the node's writes). */
  onWriteFailure(err: unknown): void;
  lagBlocks(): number;
}

/** Imports announced blocks and syncs from peers for one ChainNode. */
export class PeerSync {
  private syncing = false;

  constructor(
    private readonly node: PeerSyncHost,
    private readonly m: { logger: Logger; metrics: ChainMetrics },
  ) {}

  private get store(): ChainStore {
    return this.node.store;
  }

  private get genesis(): Genesis {
    return this.node.store.genesis;
  }

  private get stopped(): boolean {
    return this.node.isStopped();
  }

  private get peers(): readonly PeerState[] {
    return this.node.currentPeers();
  }

  get isSyncing(): boolean {
    return this.syncing;
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
      this.node.afterImport(1, fetched.block.txs.length);
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
      this.node.pollPeers().catch(() => undefined);
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
    if (peer) peer.bannedUntilMs = Date.now() + (this.node.opts.peerBanMs ?? 30_000);
  }

  async syncFrom(peer: PeerState): Promise<void> {
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
      else {
        this.node.onWriteFailure(err);
        this.m.logger.debug({ peer: client.url, err: errorMessage(err) }, "Sync from peer stopped");
      }
    } finally {
      this.syncing = false;
      this.m.metrics.lagBlocks.set(this.node.lagBlocks());
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
    let size = SYNC_FIRST_BATCH_BLOCKS;
    const fill = (): void => {
      while (queue.length < SYNC_AHEAD_BATCHES && nextFrom <= to) {
        const b = Math.min(to, nextFrom + size - 1);
        size = Math.min(SYNC_BATCH_BLOCKS, 2 * size);
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
      this.node.afterImport(
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
    this.node.afterImport(
      blocks.length,
      blocks.reduce((s, b) => s + b.block.txs.length, 0),
    );
  }
}
