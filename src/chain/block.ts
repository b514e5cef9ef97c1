/**
 * Block encoding (version 1, big-endian):
 *
 *   header: u8 version | u64 height | prevHash[32] | u64 timestampMs | u16 proposer |
 *           txRoot[32] | stateRoot[32] | u32 txCount | signature[64]
 *   block:  header | txCount × (u16 txLen | tx bytes)
 *
 * The proposer signs sha256("chainvault/block/v1" | genesisHash | header bytes before the
 * signature). The block hash is sha256 of the whole header, signature included.
 */
import type { KeyObject } from "node:crypto";
import { HASH_BYTES, SIGNATURE_BYTES, sha256, signMessage } from "./crypto.js";
import { Reader, Writer } from "./encoding.js";
import { merkleRoot, merkleRootOfItems } from "./merkle.js";
import { encodeTx, readTx, TX_BYTES_MIN, txHash } from "./tx.js";
import { BLOCK_BYTES_MAX, type Block, type BlockHeader, type Transaction } from "./types.js";

const BLOCK_VERSION = 1;
const BLOCK_DOMAIN = Buffer.from("chainvault/block/v1");
/** Size of an encoded header. */
export const HEADER_BYTES = 1 + 8 + 32 + 8 + 2 + 32 + 32 + 4 + 64;

function writeUnsignedHeader(w: Writer, h: Omit<BlockHeader, "signature">): void {
  w.u8(BLOCK_VERSION).u64(BigInt(h.height)).fixed(h.prevHash, HASH_BYTES).u64(BigInt(h.timestampMs));
  w.u16(h.proposer).fixed(h.txRoot, HASH_BYTES).fixed(h.stateRoot, HASH_BYTES).u32(h.txCount);
}

export function encodeHeader(h: BlockHeader): Buffer {
  const w = new Writer(HEADER_BYTES);
  writeUnsignedHeader(w, h);
  w.fixed(h.signature, SIGNATURE_BYTES);
  return w.finish();
}

function readHeader(r: Reader): BlockHeader {
  const version = r.u8();
  if (version !== BLOCK_VERSION) r.invalid(`unknown block version ${version}`);
  const height = r.u64();
  if (height > BigInt(Number.MAX_SAFE_INTEGER)) r.invalid(`height ${height} out of range`);
  const prevHash = r.fixed(HASH_BYTES);
  const ts = r.u64();
  if (ts > BigInt(Number.MAX_SAFE_INTEGER)) r.invalid(`timestamp ${ts} out of range`);
  return {
    height: Number(height),
    prevHash,
    timestampMs: Number(ts),
    proposer: r.u16(),
    txRoot: r.fixed(HASH_BYTES),
    stateRoot: r.fixed(HASH_BYTES),
    txCount: r.u32(),
    signature: r.fixed(SIGNATURE_BYTES),
  };
}

export function encodeBlock(b: Block): Buffer {
  const w = new Writer(HEADER_BYTES + b.txs.length * 200);
  writeUnsignedHeader(w, b.header);
  w.fixed(b.header.signature, SIGNATURE_BYTES);
  for (const tx of b.txs) w.bytes16(encodeTx(tx));
  return w.finish();
}

/**
 * The block's size bound and header, and a reader positioned at its first transaction;
 * decodeBlock and scanBlock share it so that both refuse the same framing.
 */
function readFraming(buf: Buffer): { r: Reader; header: BlockHeader } {
  const r = new Reader(buf, "block");
  if (buf.length > BLOCK_BYTES_MAX) r.invalid(`block of ${buf.length} bytes exceeds ${BLOCK_BYTES_MAX}`);
  const header = readHeader(r);
  // Each transaction takes at least TX_BYTES_MIN bytes, so the count cannot exceed what is left.
  if (header.txCount * TX_BYTES_MIN > r.remaining)
    r.invalid(`transaction count ${header.txCount} exceeds the bytes present`);
  return { r, header };
}

/**
 * The height and transaction count an encoded header declares, read at their fixed
 * offsets without decoding (0 for bytes shorter than a header): to size and name work.
 */
export function declaredHeaderFields(bytes: Buffer): { height: number; txCount: number } {
  if (bytes.length < HEADER_BYTES) return { height: 0, txCount: 0 };
  return {
    height: Number(bytes.readBigUInt64BE(HEIGHT_AT)),
    txCount: bytes.readUInt32BE(HEADER_BYTES - SIGNATURE_BYTES - 4),
  };
}

// The height follows the version byte (see the layout above).
const HEIGHT_AT = 1;

/** Decodes one block, refusing more bytes than {@link BLOCK_BYTES_MAX} or trailing bytes. */
export function decodeBlock(buf: Buffer): Block {
  const { r, header } = readFraming(buf);
  const txs: Transaction[] = [];
  for (let i = 0; i < header.txCount; i++) {
    const len = r.u16();
    const start = r.offset;
    const tx = readTx(r);
    if (r.offset - start !== len)
      r.invalid(`transaction ${i} length prefix ${len} does not match its encoding`);
    txs.push(tx);
  }
  r.end();
  return { header, txs };
}

export function headerSigningMessage(genesisHash: Buffer, h: Omit<BlockHeader, "signature">): Buffer {
  const w = new Writer(HEADER_BYTES);
  writeUnsignedHeader(w, h);
  return sha256(BLOCK_DOMAIN, genesisHash, w.finish());
}

/** An encoded block split without decoding its transactions, for the check workers. */
export interface ScannedBlock {
  header: BlockHeader;
  /** The message the proposer signed, from the header's own bytes. */
  signingMessage: Buffer;
  /** Each transaction's encoding. */
  txs: Buffer[];
}

/**
 * Reads the header and cuts out each transaction's bytes, refusing what decodeBlock
 * refuses about the block's framing; the transactions' own fields are left to decodeBlock.
 */
export function scanBlock(genesisHash: Buffer, buf: Buffer): ScannedBlock {
  const { r, header } = readFraming(buf);
  const txs: Buffer[] = [];
  for (let i = 0; i < header.txCount; i++) {
    const len = r.u16();
    if (len < TX_BYTES_MIN) r.invalid(`transaction ${i} of ${len} bytes is shorter than any transaction`);
    txs.push(r.fixed(len));
  }
  r.end();
  const unsigned = buf.subarray(0, HEADER_BYTES - SIGNATURE_BYTES);
  return { header, signingMessage: sha256(BLOCK_DOMAIN, genesisHash, unsigned), txs };
}

/** The transaction root over encoded transactions: the same as {@link txRootOf} of them decoded. */
export function txRootOfEncoded(txs: Buffer[]): Buffer {
  return merkleRootOfItems(txs);
}

export function blockHash(h: BlockHeader): Buffer {
  return sha256(encodeHeader(h));
}

export function txRootOf(txs: Transaction[]): Buffer {
  return merkleRoot(txs.map(txHash));
}

/** Signs an unsigned header and returns the complete block. */
export function sealBlock(
  genesisHash: Buffer,
  key: KeyObject,
  header: Omit<BlockHeader, "signature">,
  txs: Transaction[],
): Block {
  const signature = signMessage(key, headerSigningMessage(genesisHash, header));
  return { header: { ...header, signature }, txs };
}
