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
// account, so remembering recent expansions halves the hashing for busy accounts. They
// live in one ring buffer allocated on first use, so a thread hashing millions of leaves
// does not leave millions of 2 KiB buffers for the garbage collector.
const EXPAND_CACHE_MAX = 8192;
const WORDS = LANES / 2;
let ring: Uint32Array | undefined;
const ringKeys: (string | undefined)[] = [];
const ringIndex = new Map<string, number>();
let ringNext = 0;

/** The leaf's expansion as 512 words of two lanes each; valid until the next expansion. */
function expand(leaf: Buffer): Uint32Array {
  ring ??= new Uint32Array(EXPAND_CACHE_MAX * WORDS);
  const key = leaf.toString("latin1");
  let slot = ringIndex.get(key);
  if (slot === undefined) {
    const out = createHash("shake256", { outputLength: LANES * 2 })
      .update(leaf)
      .digest();
    if (BIG_ENDIAN_HOST) out.swap16();
    slot = ringNext;
    ringNext = (ringNext + 1) % EXPAND_CACHE_MAX;
    const old = ringKeys[slot];
    if (old !== undefined) ringIndex.delete(old);
    ringKeys[slot] = key;
    ringIndex.set(key, slot);
    new Uint8Array(ring.buffer, slot * WORDS * 4, WORDS * 4).set(out);
  }
  return ring.subarray(slot * WORDS, (slot + 1) * WORDS);
}

// Two 16-bit lanes are added or subtracted per 32-bit word, the carry or borrow kept from
// crossing into the upper lane: HI holds each lane's top bit, LO the other fifteen.
const HI = 0x80008000 | 0;
const LO = 0x7fff7fff;

// Lanes are little-endian on disk and in the root; a big-endian host swaps bytes at the edges.
const BIG_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 0;

export class LtHash {
  readonly lanes: Uint16Array;
  private readonly words: Uint32Array;

  constructor(lanes?: Uint16Array) {
    this.lanes = lanes ? new Uint16Array(lanes) : new Uint16Array(LANES);
    this.words = new Uint32Array(this.lanes.buffer, this.lanes.byteOffset, WORDS);
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
    const w = this.words;
    for (let i = 0; i < WORDS; i++) {
      const a = w[i]!;
      const b = x[i]!;
      w[i] = ((a & LO) + (b & LO)) ^ ((a ^ b) & HI);
    }
  }

  remove(leaf: Buffer): void {
    const x = expand(leaf);
    const w = this.words;
    for (let i = 0; i < WORDS; i++) {
      const a = w[i]!;
      const b = x[i]!;
      w[i] = ((a | HI) - (b & LO)) ^ (~(a ^ b) & HI);
    }
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
