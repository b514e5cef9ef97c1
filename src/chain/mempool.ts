/**
 * Pending transactions, bounded, ordered per sender by nonce. The proposer takes runs of
 * consecutive nonces starting at each sender's account nonce.
 */
import { txHash } from "./tx.js";
import type { Account, Transaction } from "./types.js";

// 20,000 transactions: ~25 MB at the 1 KiB payload limit; bounds memory under load.
export const MEMPOOL_TXS_MAX = 20_000;

export class Mempool {
  private readonly bySender = new Map<string, Map<bigint, Transaction>>();
  private readonly seen = new Set<string>();
  private count = 0;

  constructor(private readonly maxTxs = MEMPOOL_TXS_MAX) {}

  get size(): number {
    return this.count;
  }

  /** Adds a transaction; returns false if it is already here or the pool is full. */
  add(tx: Transaction): boolean {
    const id = txHash(tx).toString("hex");
    if (this.seen.has(id) || this.count >= this.maxTxs) return false;
    const sender = tx.from.toString("hex");
    let m = this.bySender.get(sender);
    if (!m) {
      m = new Map();
      this.bySender.set(sender, m);
    }
    if (m.has(tx.nonce)) return false;
    m.set(tx.nonce, tx);
    this.seen.add(id);
    this.count++;
    return true;
  }

  /** Picks up to `max` transactions, each sender's in nonce order from its account nonce. */
  select(max: number, account: (pubkey: Buffer) => Account | undefined): Transaction[] {
    const out: Transaction[] = [];
    for (const m of this.bySender.values()) {
      if (out.length >= max) break;
      const first = m.values().next().value as Transaction | undefined;
      if (!first) continue;
      let nonce = account(first.from)?.nonce ?? 0n;
      for (let tx = m.get(nonce); tx && out.length < max; tx = m.get(++nonce)) out.push(tx);
    }
    return out;
  }

  /** Drops every transaction whose nonce the chain has passed. */
  prune(account: (pubkey: Buffer) => Account | undefined): void {
    for (const [sender, m] of this.bySender) {
      const first = m.values().next().value as Transaction | undefined;
      const nonce = first ? (account(first.from)?.nonce ?? 0n) : 0n;
      for (const [n, tx] of m) {
        if (n < nonce) {
          m.delete(n);
          this.seen.delete(txHash(tx).toString("hex"));
          this.count--;
        }
      }
      if (m.size === 0) this.bySender.delete(sender);
    }
  }
}
