/**
 * The state commitment: a lattice hash (LtHash, Bellare–Micciancio; as used by Facebook
 * and Solana) over the set of account leaves. Each leaf is expanded with SHAKE256 to 1024
 * 16-bit lanes and added lane-wise modulo 2^16; removing a leaf subtracts it. The sum does
 * not depend on order, so a block updates the commitment in time proportional to the
 * accounts it touches, and a full recomputation from the state store gives the same root.
 */
import { createHash } from "node:crypto";
import { sha256 } from "./crypto.js";
import type { Account } from "./types.js";

// 1024 lanes of 16 bits: the LtHash16 parameters, about 200 bits of security.
export const LANES = 1024;
/** Size of an encoded account leaf. */
export const LEAF_BYTES = 48;
const ROOT_DOMAIN = Buffer.from("chainvault/state/v1");

/** The bytes that commit to one account: public key, balance and nonce (u64 big-endian). */
export function accountLeaf(pubkey: Buffer, acct: Account): Buffer {
  const leaf = Buffer.allocUnsafe(LEAF_BYTES);
  writeAccountLeaf(leaf, 0, pubkey, acct);
  return leaf;
}

/** Writes an account's leaf ({@link accountLeaf}) into `out` at `at`. */
export function writeAccountLeaf(out: Buffer, at: number, pubkey: Buffer, acct: Account): void {
  if (pubkey.length !== 32) throw new RangeError(`Expected a 32-byte public key, got ${pubkey.length} bytes`);
  out.set(pubkey, at);
  out.writeBigUInt64BE(acct.balance, at + 32);
  out.writeBigUInt64BE(acct.nonce, at + 40);
}

// 8192 expansions (16 MiB): a block's new leaf is the next block's old leaf for the same
// account, so remembering recent expansions halves the hashing for busy accounts. They
// live in one ring buffer allocated on first use, with the leaves they expand, so a thread
// hashing millions of leaves leaves no buffers or strings for the garbage collector. The
// index is keyed by a 32-bit hash of the leaf; a hit is confirmed against the leaf's bytes.
const EXPAND_CACHE_MAX = 8192;
const WORDS = LANES / 2;
let ring: Uint32Array | undefined;
let ringBytes: Buffer | undefined;
const ringLeaves = new Uint8Array(EXPAND_CACHE_MAX * LEAF_BYTES);
const ringLengths = new Uint8Array(EXPAND_CACHE_MAX);
const ringKeys = new Int32Array(EXPAND_CACHE_MAX);
const ringIndex = new Map<number, number>();
let ringNext = 0;
let ringFilled = 0;

/** FNV-1a over the leaf's bytes: the expansion cache's key (exported for its test). */
export function leafKey(leaf: Uint8Array): number {
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < leaf.length; i++) h = Math.imul(h ^ leaf[i]!, 16777619);
  return h;
}

function sameLeaf(leaf: Uint8Array, slot: number): boolean {
  if (leaf.length !== ringLengths[slot]) return false;
  const at = slot * LEAF_BYTES;
  for (let i = 0; i < leaf.length; i++) if (ringLeaves[at + i] !== leaf[i]) return false;
  return true;
}

/** The leaf's expansion as 512 words of two lanes each; valid until the next expansion. */
function expand(leaf: Buffer): Uint32Array {
  ring ??= new Uint32Array(EXPAND_CACHE_MAX * WORDS);
  const key = leafKey(leaf);
  let slot = ringIndex.get(key);
  if (slot === undefined || !sameLeaf(leaf, slot)) {
    slot = ringNext;
    ringNext = (ringNext + 1) % EXPAND_CACHE_MAX;
    // The slot's previous leaf leaves the index, unless a newer leaf took its key.
    if (ringFilled > slot && ringIndex.get(ringKeys[slot]!) === slot) ringIndex.delete(ringKeys[slot]!);
    ringFilled = Math.max(ringFilled, slot + 1);
    ringKeys[slot] = key;
    // Leaves up to an account leaf's size are remembered (and so can be confirmed on a hit).
    ringLengths[slot] = leaf.length <= LEAF_BYTES ? leaf.length : 0;
    if (leaf.length <= LEAF_BYTES) {
      ringLeaves.set(leaf, slot * LEAF_BYTES);
      ringIndex.set(key, slot);
    }
    // The digest comes as a latin1 string written straight into the ring: a Buffer digest
    // would allocate (and later free) a 2 KiB backing store per leaf, a third of the cost.
    ringBytes ??= Buffer.from(ring.buffer);
    const at = slot * WORDS * 4;
    const digest = createHash("shake256", { outputLength: LANES * 2 })
      .update(leaf)
      .digest("binary");
    ringBytes.write(digest, at, WORDS * 4, "latin1");
    if (BIG_ENDIAN_HOST) ringBytes.subarray(at, at + WORDS * 4).swap16();
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
