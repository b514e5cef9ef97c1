/**
 * The state commitment: a lattice hash (LtHash, Bellare–Micciancio; as used by Facebook
 * and Solana) over the set of account leaves. Each leaf is expanded with SHAKE256 to 1024
 * 16-bit lanes and added lane-wise modulo 2^16; removing a leaf subtracts it. The sum does
 * not depend on order, so a block updates the commitment in time proportional to the
 * accounts it touches, and a full recomputation from the state store gives the same root.
 */
import { createHash } from "node:crypto";
import { sha256 } from "./crypto.js";
import { Writer } from "./encoding.js";
import type { Account } from "./types.js";

// 1024 lanes of 16 bits: the LtHash16 parameters, about 200 bits of security.
export const LANES = 1024;
/** Size of an encoded account leaf. */
export const LEAF_BYTES = 48;
const ROOT_DOMAIN = Buffer.from("chainvault/state/v1");

/** The bytes that commit to one account. */
export function accountLeaf(pubkey: Buffer, acct: Account): Buffer {
  return new Writer(LEAF_BYTES).fixed(pubkey, 32).u64(acct.balance).u64(acct.nonce).finish();
}

// 8192 expansions (16 MiB): a block's new leaf is the next block's old leaf for the same
// account, so remembering recent expansions halves the hashing for busy accounts.
const EXPAND_CACHE_MAX = 8192;
const expandCache = new Map<string, Uint16Array>();

function expand(leaf: Buffer): Uint16Array {
  const key = leaf.toString("latin1");
  const hit = expandCache.get(key);
  if (hit) return hit;
  const out = createHash("shake256", { outputLength: LANES * 2 })
    .update(leaf)
    .digest();
  if (BIG_ENDIAN_HOST) out.swap16();
  const lanes = new Uint16Array(out.buffer, out.byteOffset, LANES);
  if (expandCache.size >= EXPAND_CACHE_MAX) expandCache.delete(expandCache.keys().next().value as string);
  expandCache.set(key, lanes);
  return lanes;
}

// Lanes are little-endian on disk and in the root; a big-endian host swaps bytes at the edges.
const BIG_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 0;

export class LtHash {
  readonly lanes: Uint16Array;

  constructor(lanes?: Uint16Array) {
    this.lanes = lanes ? new Uint16Array(lanes) : new Uint16Array(LANES);
  }

  static fromBytes(b: Buffer): LtHash {
    if (b.length !== LANES * 2)
      throw new RangeError(`LtHash state must be ${LANES * 2} bytes, got ${b.length}`);
    const copy = Buffer.from(b);
    if (BIG_ENDIAN_HOST) copy.swap16();
    return new LtHash(new Uint16Array(copy.buffer, copy.byteOffset, LANES));
  }

  clone(): LtHash {
    return new LtHash(this.lanes);
  }

  add(leaf: Buffer): void {
    const x = expand(leaf);
    const l = this.lanes;
    for (let i = 0; i < LANES; i++) l[i] = (l[i]! + x[i]!) & 0xffff;
  }

  remove(leaf: Buffer): void {
    const x = expand(leaf);
    const l = this.lanes;
    for (let i = 0; i < LANES; i++) l[i] = (l[i]! - x[i]!) & 0xffff;
  }

  /** Adds another LtHash's lanes (a delta: the leaves one block added minus those it removed). */
  addLanes(d: Uint16Array): void {
    const l = this.lanes;
    for (let i = 0; i < LANES; i++) l[i] = (l[i]! + d[i]!) & 0xffff;
  }

  /** A copy of the lanes as little-endian bytes. */
  toBytes(): Buffer {
    const b = Buffer.from(Buffer.from(this.lanes.buffer, this.lanes.byteOffset, LANES * 2));
    if (BIG_ENDIAN_HOST) b.swap16();
    return b;
  }

  /** The 32-byte state root that block headers carry. */
  root(): Buffer {
    return sha256(ROOT_DOMAIN, this.toBytes());
  }
}
