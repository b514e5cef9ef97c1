/**
 * A block in the forms storage handles: prepared once on arrival (bytes and hash), kept
 * as its header once executed, and turned into the item the ledger appends.
 */
import { encodeBlock, HEADER_BYTES } from "../block.js";
import { blockWeight } from "../consensus.js";
import { sha256 } from "../crypto.js";
import type { Block, BlockHeader } from "../types.js";
import type { LedgerItem } from "./ledger-store.js";

/** A block with the values storage derives from it once. */
export interface ImportedBlock {
  block: Block;
  bytes: Buffer;
  hash: Buffer;
}

/**
 * What storage keeps of a block once it is executed: header, bytes and hash. An import
 * holds a batch this way until it writes it, so the batch's decoded transactions are
 * garbage as soon as each block is executed (young, and cheap for the collector).
 */
export interface StoredBlock {
  block: { header: BlockHeader };
  bytes: Buffer;
  hash: Buffer;
}

export function prepareBlock(block: Block, bytes?: Buffer): ImportedBlock {
  const b = bytes ?? encodeBlock(block);
  // The header is the first HEADER_BYTES of the encoding: hash those bytes, do not re-encode.
  return { block, bytes: b, hash: sha256(b.subarray(0, HEADER_BYTES)) };
}

/** The ledger item a chain store appends for a block: its bytes and what the index keeps. */
export function ledgerItemOf(ib: StoredBlock, validatorCount: number): LedgerItem {
  const h = ib.block.header;
  return {
    height: h.height,
    bytes: ib.bytes,
    hash: ib.hash,
    timestampMs: h.timestampMs,
    weight: blockWeight(h.height, h.proposer, validatorCount),
  };
}
