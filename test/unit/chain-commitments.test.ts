// Goal: prove the transaction Merkle root and the LtHash state commitment bind exactly their contents; method: compare merkleRoot with an independent RFC 6962 reference and known collision shapes, and drive LtHash through reorderings, removals and serialisation.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import os from "node:os";
import { test } from "node:test";
import { accountLeaf, createLanes, LtHash, leafKey } from "../../src/chain/lthash.js";
import { EMPTY_ROOT, merkleRoot } from "../../src/chain/merkle.js";

// An independent hash so the expectations below do not reuse the code under test.
function h(...parts: Buffer[]): Buffer {
  const hash = createHash("sha256");
  for (const p of parts) hash.update(p);
  return hash.digest();
}

const leaf = (n: number): Buffer => h(Buffer.from(`leaf ${n}`));
const [a, b, c] = [leaf(1), leaf(2), leaf(3)];

/** RFC 6962 section 2.1 Merkle Tree Hash for n >= 1: split at the largest power of two below n. */
function rfc6962Root(leaves: Buffer[]): Buffer {
  if (leaves.length === 1) return h(Buffer.from([0]), leaves[0]!);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return h(Buffer.from([1]), rfc6962Root(leaves.slice(0, k)), rfc6962Root(leaves.slice(k)));
}

// --- merkle ---

test("the Merkle root of an empty list is the EMPTY_ROOT constant, sha256 of 'chainvault/empty'", () => {
  assert.deepEqual(merkleRoot([]), EMPTY_ROOT);
  assert.deepEqual(EMPTY_ROOT, h(Buffer.from("chainvault/empty")));
  assert.notDeepEqual(merkleRoot([Buffer.alloc(0)]), EMPTY_ROOT);
});

test("a single leaf's root is its 0x00-prefixed hash, not the leaf itself", () => {
  assert.deepEqual(merkleRoot([a]), h(Buffer.from([0]), a));
  assert.notDeepEqual(merkleRoot([a]), a);
});

test("merkleRoot matches the RFC 6962 tree hash for 1 to 17 leaves", () => {
  const leaves = Array.from({ length: 17 }, (_, i) => leaf(i));
  for (let n = 1; n <= leaves.length; n++) {
    assert.deepEqual(merkleRoot(leaves.slice(0, n)), rfc6962Root(leaves.slice(0, n)), `${n} leaves`);
  }
});

test("an odd last leaf is promoted, so [a,b,c] and [a,b,c,c] have different roots", () => {
  assert.notDeepEqual(merkleRoot([a, b, c]), merkleRoot([a, b, c, c]));
  assert.notDeepEqual(merkleRoot([a]), merkleRoot([a, a]));
  assert.notDeepEqual(merkleRoot([a, b, c, c]), merkleRoot([a, b, c, c, c, c]));
});

test("different leaf lists give different roots: order, length and content all count", () => {
  const lists = [[a], [b], [a, b], [b, a], [a, b, c], [a, c, b], [a, b, c, a]];
  const roots = new Set(lists.map((l) => merkleRoot(l).toString("hex")));
  assert.equal(roots.size, lists.length);
  assert.deepEqual(merkleRoot([a, b]), merkleRoot([Buffer.from(a), Buffer.from(b)]));
});

test("a leaf equal to an inner node's preimage does not share its root", () => {
  const inner = Buffer.concat([h(Buffer.from([0]), a), h(Buffer.from([0]), b)]);
  assert.notDeepEqual(merkleRoot([inner]), merkleRoot([a, b]));
});

// --- lthash ---

const acct = (n: number, balance: bigint, nonce = 0n): Buffer =>
  accountLeaf(Buffer.alloc(32, n), { balance, nonce });
const [x, y, z] = [acct(1, 100n), acct(2, 200n), acct(3, 300n)];

function ltOf(leaves: Buffer[]): LtHash {
  const lt = new LtHash();
  for (const l of leaves) lt.add(l);
  return lt;
}

test("LtHash gives the same root whatever order the leaves are added in", () => {
  const root = ltOf([x, y, z]).root();
  for (const order of [
    [x, z, y],
    [y, x, z],
    [y, z, x],
    [z, x, y],
    [z, y, x],
  ]) {
    assert.deepEqual(ltOf(order).root(), root);
  }
});

test("adding then removing leaves returns LtHash to the empty value", () => {
  const empty = new LtHash();
  assert.ok(empty.lanes.every((v) => v === 0));
  const lt = ltOf([x, y]);
  assert.notDeepEqual(lt.root(), empty.root());
  lt.remove(y);
  assert.deepEqual(lt.root(), ltOf([x]).root());
  lt.remove(x);
  assert.ok(lt.lanes.every((v) => v === 0));
  assert.deepEqual(lt.root(), empty.root());
});

/** Each lane: the sum modulo 2^16 of the leaves' SHAKE256 expansions (little-endian 16-bit lanes). */
function referenceLanes(added: Buffer[], removed: Buffer[]): number[] {
  const lanes = new Array<number>(1024).fill(0);
  const apply = (l: Buffer, sign: number): void => {
    const x = createHash("shake256", { outputLength: 2048 }).update(l).digest();
    for (let i = 0; i < 1024; i++) lanes[i] = (lanes[i]! + sign * x.readUInt16LE(2 * i) + 0x10000) % 0x10000;
  };
  for (const l of added) apply(l, 1);
  for (const l of removed) apply(l, -1);
  return lanes;
}

test("every LtHash lane is the sum modulo 2^16 of the leaves' SHAKE256 lanes, carries and borrows never crossing lanes", () => {
  // 9,000 distinct leaves: more than the expansion cache holds, so evicted slots are reused.
  const leaves = Array.from({ length: 9000 }, (_, i) =>
    accountLeaf(h(Buffer.from(`lane ${i}`)), { balance: BigInt(i), nonce: BigInt(i % 7) }),
  );
  const removed = leaves.filter((_, i) => i % 3 === 0);
  const lt = new LtHash();
  for (const l of leaves) lt.add(l);
  for (const l of removed) lt.remove(l);
  // Leaves removed that were never added: lanes must borrow within themselves.
  const strangers = [h(Buffer.from("not added 1")), h(Buffer.from("not added 2"))];
  for (const l of strangers) lt.remove(l);
  assert.deepEqual([...lt.lanes], referenceLanes(leaves, [...removed, ...strangers]));
  // Re-adding leaves whose expansions were evicted long ago recomputes them correctly.
  lt.add(leaves[0]!);
  assert.deepEqual([...lt.lanes], referenceLanes([...leaves, leaves[0]!], [...removed, ...strangers]));
});

test("applyLeaves, a block's removals then additions from one buffer, equals the sums leaf by leaf", () => {
  const leaves = Array.from({ length: 300 }, (_, i) =>
    accountLeaf(h(Buffer.from(`block ${i}`)), { balance: BigInt(i), nonce: 1n }),
  );
  const removed = leaves.slice(0, 120);
  const added = leaves.slice(100);
  // A starting state that is not zero, so the lanes loaded into the accumulator matter.
  const start = ltOf([x, y]);
  const lt = start.clone();
  lt.applyLeaves(
    Buffer.concat([Buffer.alloc(48, 9), ...removed, ...added]),
    48,
    removed.length,
    added.length,
  );
  assert.deepEqual([...lt.lanes], referenceLanes([x, y, ...added], removed));
  // The state it started from is untouched.
  assert.deepEqual([...start.lanes], referenceLanes([x, y], []));
});

test("without a WebAssembly memory the lanes are summed in JavaScript, with the same results", () => {
  const simd = createLanes();
  const js = createLanes(() => {
    throw new RangeError("WebAssembly.Memory(): could not allocate memory");
  });
  assert.equal(simd.hostOrder, false);
  assert.equal(js.hostOrder, true);
  // Two states at the ring's first slots; lanes near 0 and 0xffff make carries and borrows.
  const a = createHash("shake256", { outputLength: 2048 }).update("a").digest();
  const b = createHash("shake256", { outputLength: 2048 }).update("b").digest();
  a.writeUInt16LE(0xffff, 0);
  b.writeUInt16LE(0x0001, 0);
  a.writeUInt16LE(0x0000, 2);
  b.writeUInt16LE(0x0001, 2);
  const expect = (op: (x: number, y: number) => number): number[] =>
    Array.from({ length: 1024 }, (_, i) => op(a.readUInt16LE(2 * i), b.readUInt16LE(2 * i)) & 0xffff);
  for (const [name, op, f] of [
    ["add", (x: number, y: number) => x + y, "add"],
    ["sub", (x: number, y: number) => x - y + 0x10000, "sub"],
  ] as const) {
    for (const lanes of [simd, js]) {
      // WebAssembly memory holds little-endian lanes; the JavaScript fallback the host's.
      const swap = lanes.hostOrder && os.endianness() === "BE";
      const put = (x: Buffer): Buffer => (swap ? Buffer.from(x).swap16() : x);
      lanes.mem.set(put(a), 0);
      lanes.mem.set(put(b), 2048);
      lanes[f](0, 2048);
      const out = put(lanes.mem.subarray(0, 2048));
      const got = Array.from({ length: 1024 }, (_, i) => out.readUInt16LE(2 * i));
      assert.deepEqual(got, expect(op), `${name}, ${lanes.hostOrder ? "JavaScript" : "WebAssembly"}`);
    }
  }
});

test("two leaves whose cache keys collide still get their own expansions", () => {
  // A birthday search for two account leaves with the same 32-bit cache key.
  const seen = new Map<number, Buffer>();
  let pair: [Buffer, Buffer] | undefined;
  for (let i = 0; !pair; i++) {
    const l = accountLeaf(h(Buffer.from(`collide ${i}`)), { balance: BigInt(i), nonce: 0n });
    const other = seen.get(leafKey(l));
    if (other) pair = [other, l];
    else seen.set(leafKey(l), l);
  }
  const [a, b] = pair;
  assert.notDeepEqual(a, b);
  const lt = new LtHash();
  lt.add(a);
  lt.add(b);
  lt.remove(a);
  lt.add(a);
  assert.deepEqual([...lt.lanes], referenceLanes([a, b, a], [a]));
});

test("removing before adding gives the same result, so lane arithmetic wraps modulo 2^16", () => {
  const lt = new LtHash();
  lt.remove(x);
  lt.add(y);
  lt.add(x);
  assert.deepEqual(lt.root(), ltOf([y]).root());
});

test("LtHash.fromBytes(toBytes()) restores the same state as an independent copy", () => {
  const lt = ltOf([x, y]);
  const bytes = lt.toBytes();
  assert.equal(bytes.length, 2048);
  const restored = LtHash.fromBytes(bytes);
  assert.deepEqual(restored.root(), lt.root());
  assert.deepEqual(restored.toBytes(), bytes);
  lt.add(z);
  assert.deepEqual(restored.root(), ltOf([x, y]).root());
});

test("LtHash.fromBytes refuses a state of the wrong size", () => {
  assert.throws(() => LtHash.fromBytes(Buffer.alloc(2047)), RangeError);
  assert.throws(() => LtHash.fromBytes(Buffer.alloc(2049)), RangeError);
});

test("a cloned LtHash evolves independently of the original", () => {
  const lt = ltOf([x]);
  const copy = lt.clone();
  copy.add(y);
  assert.deepEqual(lt.root(), ltOf([x]).root());
  assert.deepEqual(copy.root(), ltOf([x, y]).root());
});

test("different sets of leaves give different LtHash roots", () => {
  const sets = [[], [x], [y], [x, y], [x, y, z], [x, x]];
  const roots = new Set(sets.map((s) => ltOf(s).root().toString("hex")));
  assert.equal(roots.size, sets.length);
});

test("accountLeaf commits to the key, the balance and the nonce", () => {
  const base = acct(1, 100n, 0n);
  assert.equal(base.length, 48);
  for (const other of [acct(2, 100n, 0n), acct(1, 101n, 0n), acct(1, 100n, 1n)]) {
    assert.notDeepEqual(other, base);
    assert.notDeepEqual(ltOf([other]).root(), ltOf([base]).root());
  }
});
