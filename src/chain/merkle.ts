/**
 * Merkle root over transaction ids, RFC 6962 style: leaves and inner nodes are hashed
 * with different prefixes and an odd node is promoted, not duplicated, so two different
 * lists never share a root (Bitcoin's CVE-2012-2459 cannot happen).
 */
import { HASH_BYTES, sha256, sha256Into } from "./crypto.js";

const LEAF = Buffer.from([0]);
const NODE = Buffer.from([1]);
/** Root of an empty list. */
export const EMPTY_ROOT = sha256(Buffer.from("chainvault/empty"));

// The input of one leaf or inner-node hash: a prefix byte and one or two 32-byte nodes.
const input = Buffer.allocUnsafeSlow(1 + 2 * HASH_BYTES);
const leafInput = input.subarray(0, 1 + HASH_BYTES);
const nodeInput = input.subarray(0, 1 + 2 * HASH_BYTES);
// The nodes of the level being reduced, 32 bytes each; grown as needed, reused.
let level = Buffer.allocUnsafeSlow(256 * HASH_BYTES);

function levelFor(n: number): Buffer {
  if (level.length < n * HASH_BYTES) level = Buffer.allocUnsafeSlow(n * HASH_BYTES);
  return level;
}

/** The root over a list of leaves (transaction ids). */
export function merkleRoot(leaves: Buffer[]): Buffer {
  const l = levelFor(leaves.length);
  for (let i = 0; i < leaves.length; i++) {
    const leaf = leaves[i]!;
    if (leaf.length !== HASH_BYTES) {
      sha256Into(Buffer.concat([LEAF, leaf]), l, i * HASH_BYTES);
      continue;
    }
    input[0] = LEAF[0]!;
    leaf.copy(input, 1);
    sha256Into(leafInput, l, i * HASH_BYTES);
  }
  return reduce(l, leaves.length);
}

/** The root over the sha256 ids of a list of items (a block's encoded transactions). */
export function merkleRootOfItems(items: Buffer[]): Buffer {
  const l = levelFor(items.length);
  input[0] = LEAF[0]!;
  for (let i = 0; i < items.length; i++) {
    sha256Into(items[i]!, input, 1);
    sha256Into(leafInput, l, i * HASH_BYTES);
  }
  return reduce(l, items.length);
}

/**
 * Hashes pairs of the `n` leaf hashes in `l` into their parent, level by level, in place
 * (a parent's slot is never ahead of its children's), with no Buffer per hash.
 */
function reduce(l: Buffer, n: number): Buffer {
  if (n === 0) return EMPTY_ROOT;
  input[0] = NODE[0]!;
  while (n > 1) {
    let m = 0;
    for (let i = 0; i < n; i += 2, m++) {
      if (i + 1 < n) {
        l.copy(input, 1, i * HASH_BYTES, (i + 2) * HASH_BYTES);
        sha256Into(nodeInput, l, m * HASH_BYTES);
      } else l.copyWithin(m * HASH_BYTES, i * HASH_BYTES, (i + 1) * HASH_BYTES);
    }
    n = m;
  }
  return Buffer.from(l.subarray(0, HASH_BYTES));
}
