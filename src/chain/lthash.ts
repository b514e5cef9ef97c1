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
// live in one ring in WebAssembly memory (created on first use), with the leaves they
// expand, so a thread hashing millions of leaves leaves no buffers or strings for the
// garbage collector, and the lanes are added there with SIMD. The index is keyed by a
// 32-bit hash of the leaf; a hit is confirmed against the leaf's bytes.
const EXPAND_CACHE_MAX = 8192;
const STATE_BYTES = LANES * 2;
// The accumulator the lane arithmetic works in, after the ring.
const ACC = EXPAND_CACHE_MAX * STATE_BYTES;
const ringLeaves = new Uint8Array(EXPAND_CACHE_MAX * LEAF_BYTES);
const ringLengths = new Uint8Array(EXPAND_CACHE_MAX);
const ringKeys = new Int32Array(EXPAND_CACHE_MAX);
const ringIndex = new Map<number, number>();
let ringNext = 0;
let ringFilled = 0;

/**
 * Lane arithmetic in WebAssembly SIMD, eight 16-bit lanes per instruction (i16x8.add and
 * i16x8.sub wrap modulo 2^16, as LtHash16 wants): `add(dst, src)` and `sub(dst, src)` take
 * byte offsets of two 2 KiB states in `mem`. About five times faster than the same sums in
 * 32-bit words in JavaScript (~0.15 against ~0.7 us a leaf), which were a third of a check
 * worker's commitment time. The module, assembled by hand (WebAssembly binary format 1.0
 * with the SIMD proposal, which Node has shipped since 16.4):
 *
 *   (module
 *     (import "env" "mem" (memory 257))             ;; the ring (256 pages) + the accumulator
 *     (func (export "add") (param $dst i32) (param $src i32) (local $i i32)
 *       (loop $next
 *         (v128.store (i32.add (local.get $dst) (local.get $i))
 *           (i16x8.add (v128.load (i32.add (local.get $dst) (local.get $i)))
 *                      (v128.load (i32.add (local.get $src) (local.get $i)))))
 *         (br_if $next (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 16)))
 *                                (i32.const 2048)))))
 *     (func (export "sub") ...the same with i16x8.sub...))
 */
function laneModule(): Uint8Array {
  // biome-ignore format: one instruction per line
  const body = (op: number): number[] => [
    0x01, 0x01, 0x7f, // one local: i32 $i
    0x03, 0x40, // loop $next
    0x20, 0x00, 0x20, 0x02, 0x6a, // dst + i: the store's address
    0x20, 0x00, 0x20, 0x02, 0x6a, 0xfd, 0x00, 0x04, 0x00, // v128.load (dst + i)
    0x20, 0x01, 0x20, 0x02, 0x6a, 0xfd, 0x00, 0x04, 0x00, // v128.load (src + i)
    0xfd, op, 0x01, // i16x8.add (0x8e) or i16x8.sub (0x91)
    0xfd, 0x0b, 0x04, 0x00, // v128.store
    0x20, 0x02, 0x41, 0x10, 0x6a, 0x22, 0x02, // i = i + 16
    0x41, 0x80, 0x10, 0x49, 0x0d, 0x00, // br_if $next (i < 2048)
    0x0b, 0x0b, // end loop, end function
  ];
  const add = body(0x8e);
  const sub = body(0x91);
  const code = [0x02, add.length, ...add, sub.length, ...sub];
  // biome-ignore format: one section per line
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
    0x01, 0x06, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x00, // types: (i32, i32) -> ()
    0x02, 0x0d, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00, 0x81, 0x02, // import env.mem, 257 pages
    0x03, 0x03, 0x02, 0x00, 0x00, // two functions of type 0
    0x07, 0x0d, 0x02, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00, 0x03, 0x73, 0x75, 0x62, 0x00, 0x01, // export add, sub
    0x0a, code.length, ...code,
  ]);
}

// Node has WebAssembly; the type libraries this project builds with (ES2022, no DOM) do not declare it.
declare const WebAssembly: {
  Memory: new (d: { initial: number }) => { buffer: ArrayBuffer };
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: object };
};

export interface Lanes {
  add(dst: number, src: number): void;
  sub(dst: number, src: number): void;
  /** The lanes' memory: the ring of expansions, then the accumulator. */
  mem: Buffer;
  /** The accumulator's lanes, as this host reads them. */
  acc: Uint16Array;
  /**
   * Whether `mem` holds the lanes in the host's byte order (the JavaScript fallback) rather
   * than little-endian (WebAssembly's): it decides where a big-endian host swaps bytes.
   */
  hostOrder: boolean;
}
let lanes: Lanes | undefined;

/** This thread's lane arithmetic and its memory, made on first use. */
function laneOps(): Lanes {
  lanes ??= createLanes();
  return lanes;
}

/**
 * The lane arithmetic over a new memory for the ring and the accumulator: WebAssembly
 * SIMD, or, when no WebAssembly memory can be had (V8 reserves ~10 GiB of address space
 * for one, more than a process under a smaller `ulimit -v` may map) or the CPU lacks the
 * SIMD it needs, the same sums in JavaScript. `wasmMemory` makes that memory (exported for the fallback's test).
 */
export function createLanes(
  wasmMemory: (pages: number) => { buffer: ArrayBuffer } = (pages) =>
    new WebAssembly.Memory({ initial: pages }),
): Lanes {
  const bytes = ACC + STATE_BYTES;
  let memory: { buffer: ArrayBuffer };
  let ops: { add(d: number, s: number): void; sub(d: number, s: number): void };
  try {
    memory = wasmMemory((bytes + 0xffff) >>> 16);
    // A CPU without the SIMD the module needs (SSE4.1 on x64) refuses it here.
    const inst = new WebAssembly.Instance(new WebAssembly.Module(laneModule()), { env: { mem: memory } });
    ops = inst.exports as typeof ops;
  } catch {
    return swarLanes(new ArrayBuffer(bytes));
  }
  return {
    add: ops.add,
    sub: ops.sub,
    mem: Buffer.from(memory.buffer),
    acc: new Uint16Array(memory.buffer, ACC, LANES),
    hostOrder: false,
  };
}

// Two 16-bit lanes are added or subtracted per 32-bit word, the carry or borrow kept from
// crossing into the upper lane: HI holds each lane's top bit, LO the other fifteen.
const HI = 0x80008000 | 0;
const LO = 0x7fff7fff;

/** The same sums in 32-bit words in JavaScript (~0.7 us a leaf), over host-order lanes. */
function swarLanes(buffer: ArrayBuffer): Lanes {
  const w = new Uint32Array(buffer);
  const words = STATE_BYTES / 4;
  return {
    add(dst: number, src: number): void {
      for (let i = dst >>> 2, j = src >>> 2, end = i + words; i < end; i++, j++) {
        const a = w[i]!;
        const b = w[j]!;
        w[i] = ((a & LO) + (b & LO)) ^ ((a ^ b) & HI);
      }
    },
    sub(dst: number, src: number): void {
      for (let i = dst >>> 2, j = src >>> 2, end = i + words; i < end; i++, j++) {
        const a = w[i]!;
        const b = w[j]!;
        w[i] = ((a | HI) - (b & LO)) ^ (~(a ^ b) & HI);
      }
    },
    mem: Buffer.from(buffer),
    acc: new Uint16Array(buffer, ACC, LANES),
    hostOrder: true,
  };
}

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

/** The byte offset in the lanes' memory of the leaf's expansion; valid until the next expansion. */
function expand(leaf: Buffer): number {
  const { mem, hostOrder } = laneOps();
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
    // Its bytes are the lanes little-endian, as WebAssembly reads them on any host.
    const digest = createHash("shake256", { outputLength: STATE_BYTES }).update(leaf).digest("binary");
    mem.write(digest, slot * STATE_BYTES, STATE_BYTES, "latin1");
    if (BIG_ENDIAN_HOST && hostOrder) mem.subarray(slot * STATE_BYTES, (slot + 1) * STATE_BYTES).swap16();
  }
  return slot * STATE_BYTES;
}

// Lanes are little-endian on disk, in the root and in WebAssembly memory; a big-endian
// host swaps bytes where its own Uint16Arrays meet them (or, in the JavaScript fallback,
// as each expansion is written).
const BIG_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 0;

/** Loads host-order lanes into the accumulator. */
function accLoad(l: Uint16Array): Lanes {
  const s = laneOps();
  s.acc.set(l);
  if (BIG_ENDIAN_HOST && !s.hostOrder) s.mem.subarray(ACC, ACC + STATE_BYTES).swap16();
  return s;
}

/** Stores the accumulator into host-order lanes. */
function accStore(s: Lanes, l: Uint16Array): void {
  if (BIG_ENDIAN_HOST && !s.hostOrder) s.mem.subarray(ACC, ACC + STATE_BYTES).swap16();
  l.set(s.acc);
}

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
    const s = accLoad(this.lanes);
    s.add(ACC, expand(leaf));
    accStore(s, this.lanes);
  }

  remove(leaf: Buffer): void {
    const s = accLoad(this.lanes);
    s.sub(ACC, expand(leaf));
    accStore(s, this.lanes);
  }

  /**
   * Removes `removed` leaves of `LEAF_BYTES` each from `leaves` at byte `at`, then adds
   * the `added` that follow them: a block's changes, with the lanes loaded and stored once.
   */
  applyLeaves(leaves: Buffer, at: number, removed: number, added: number): void {
    const s = accLoad(this.lanes);
    for (let i = 0; i < removed; i++, at += LEAF_BYTES)
      s.sub(ACC, expand(leaves.subarray(at, at + LEAF_BYTES)));
    for (let i = 0; i < added; i++, at += LEAF_BYTES)
      s.add(ACC, expand(leaves.subarray(at, at + LEAF_BYTES)));
    accStore(s, this.lanes);
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
