/**
 * On-disk formats of the ledger: segment files and the height index. See docs/storage.md.
 *
 * Segment `seg-NNNNNNNN.dat`:
 *   header (32 bytes): magic "CVLEDGR1" | u32 segment number | u64 first height | 12 zero bytes
 *   records:           u32 bodyLength | u32 crc32(body) | body
 *   body:              u8 type | u64 height | payload
 *     type 1, block:   payload = the encoded block
 *     type 2, seal:    payload = u32 blockCount | sha256 of every byte of the file before this record
 *
 * Height index `heights.idx`:
 *   header (16 bytes): magic "CVHIDX01" | u64 first height (1)
 *   entry per height (64 bytes) at 16 + (height - 1) × 64:
 *     u32 segment | u32 offset of the record | u32 record length | u32 crc32(other 60 bytes) |
 *     u64 cumulative weight | u64 timestampMs | block hash[32]
 */
import { crc32 } from "node:zlib";

export const SEGMENT_MAGIC = Buffer.from("CVLEDGR1");
export const SEGMENT_HEADER_BYTES = 32;
export const RECORD_HEADER_BYTES = 8;
export const RECORD_BODY_PREFIX_BYTES = 9;
export const RECORD_BLOCK = 1;
export const RECORD_SEAL = 2;

export const INDEX_MAGIC = Buffer.from("CVHIDX01");
export const INDEX_HEADER_BYTES = 16;
export const INDEX_ENTRY_BYTES = 64;

export function segmentFileName(n: number): string {
  return `seg-${String(n).padStart(8, "0")}.dat`;
}

export function parseSegmentFileName(name: string): number | undefined {
  const m = /^seg-(\d{8})\.dat$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

export function encodeSegmentHeader(segment: number, firstHeight: number): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_BYTES);
  SEGMENT_MAGIC.copy(b, 0);
  b.writeUInt32BE(segment, 8);
  b.writeBigUInt64BE(BigInt(firstHeight), 12);
  return b;
}

export function encodeRecord(type: number, height: number, payload: Buffer): Buffer {
  const body = RECORD_BODY_PREFIX_BYTES + payload.length;
  const b = Buffer.allocUnsafe(RECORD_HEADER_BYTES + body);
  b.writeUInt32BE(body, 0);
  b.writeUInt8(type, 8);
  b.writeBigUInt64BE(BigInt(height), 9);
  payload.copy(b, RECORD_HEADER_BYTES + RECORD_BODY_PREFIX_BYTES);
  b.writeUInt32BE(crc32(b.subarray(RECORD_HEADER_BYTES)), 4);
  return b;
}

/** A record read back from a segment, or the reason it could not be. */
export type RecordRead =
  | { ok: true; type: number; height: number; payload: Buffer; length: number }
  | { ok: false; reason: string };

/** Parses the record at `off` in `buf` (which may end early, as after a torn write). */
export function parseRecord(buf: Buffer, off: number): RecordRead {
  if (off + RECORD_HEADER_BYTES > buf.length) return { ok: false, reason: "record header is truncated" };
  const bodyLen = buf.readUInt32BE(off);
  if (bodyLen < RECORD_BODY_PREFIX_BYTES)
    return { ok: false, reason: `record length ${bodyLen} is too small` };
  const end = off + RECORD_HEADER_BYTES + bodyLen;
  if (end > buf.length) return { ok: false, reason: `record of ${bodyLen} bytes is truncated` };
  const body = buf.subarray(off + RECORD_HEADER_BYTES, end);
  if (crc32(body) !== buf.readUInt32BE(off + 4))
    return { ok: false, reason: "record checksum does not match" };
  const height = body.readBigUInt64BE(1);
  return {
    ok: true,
    type: body.readUInt8(0),
    height: Number(height),
    payload: body.subarray(RECORD_BODY_PREFIX_BYTES),
    length: RECORD_HEADER_BYTES + bodyLen,
  };
}

/** Where a block lives and what the chain needs of it without reading it. */
export interface IndexEntry {
  segment: number;
  offset: number;
  length: number;
  weight: bigint;
  timestampMs: number;
  hash: Buffer;
}

export function encodeIndexEntry(e: IndexEntry): Buffer {
  const b = Buffer.alloc(INDEX_ENTRY_BYTES);
  b.writeUInt32BE(e.segment, 0);
  b.writeUInt32BE(e.offset, 4);
  b.writeUInt32BE(e.length, 8);
  b.writeBigUInt64BE(e.weight, 16);
  b.writeBigUInt64BE(BigInt(e.timestampMs), 24);
  e.hash.copy(b, 32);
  b.writeUInt32BE(crc32(Buffer.concat([b.subarray(0, 12), b.subarray(16)])), 12);
  return b;
}

/** Decodes an index entry, or returns undefined if its checksum fails (torn or zeroed). */
export function decodeIndexEntry(b: Buffer): IndexEntry | undefined {
  if (b.length !== INDEX_ENTRY_BYTES) return undefined;
  if (crc32(Buffer.concat([b.subarray(0, 12), b.subarray(16)])) !== b.readUInt32BE(12)) return undefined;
  return {
    segment: b.readUInt32BE(0),
    offset: b.readUInt32BE(4),
    length: b.readUInt32BE(8),
    weight: b.readBigUInt64BE(16),
    timestampMs: Number(b.readBigUInt64BE(24)),
    hash: Buffer.from(b.subarray(32, 64)),
  };
}
