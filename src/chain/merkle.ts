/**
 * Merkle root over transaction ids, RFC 6962 style: leaves and inner nodes are hashed
 * with different prefixes and an odd node is promoted, not duplicated, so two different
 * lists never share a root (Bitcoin's CVE-2012-2459 cannot happen).
 */
import { sha256 } from "./crypto.js";

const LEAF = Buffer.from([0]);
const NODE = Buffer.from([1]);
/** Root of an empty list. */
export const EMPTY_ROOT = sha256(Buffer.from("chainvault/empty"));

export function merkleRoot(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return EMPTY_ROOT;
  let level = leaves.map((l) => sha256(LEAF, l));
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) {
      const right = level[i + 1];
      next.push(right ? sha256(NODE, level[i]!, right) : level[i]!);
    }
    level = next;
  }
  return level[0]!;
}
