/**
 * Reads the blocks of a ledger directory straight from its segment files, in order,
 * without opening (or repairing) it as a node would. Used by validation, backups and
 * repair tools, which must look at the bytes as they are on disk.
 */
import { closeSync, fstatSync, openSync, readdirSync, readSync } from "node:fs";
import { join } from "node:path";
import { sha256 } from "../crypto.js";
import {
  parseRecord,
  parseSegmentFileName,
  RECORD_BLOCK,
  RECORD_SEAL,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
  segmentFileName,
} from "./segment-format.js";

/** A block record as found on disk, or the fault found instead. */
export type SegmentEntry =
  | { kind: "block"; height: number; payload: Buffer; file: string; offset: number }
  | { kind: "seal"; height: number; file: string; offset: number; blockCount: number; digest: Buffer }
  | { kind: "fault"; file: string; offset: number; reason: string };

export function listSegments(ledgerDir: string): { segment: number; path: string }[] {
  return readdirSync(ledgerDir)
    .map((name) => ({ segment: parseSegmentFileName(name), path: join(ledgerDir, name) }))
    .filter((s): s is { segment: number; path: string } => s.segment !== undefined)
    .sort((a, b) => a.segment - b.segment);
}

/**
 * Yields every record of every segment in order. A fault (missing segment, bad header,
 * torn or corrupt record) is yielded once and ends the iteration.
 */
export function* readSegments(ledgerDir: string): Generator<SegmentEntry> {
  const segs = listSegments(ledgerDir);
  for (let i = 0; i < segs.length; i++) {
    const { segment, path } = segs[i]!;
    if (segment !== i) {
      yield {
        kind: "fault",
        file: join(ledgerDir, segmentFileName(i)),
        offset: 0,
        reason: `segment ${segmentFileName(i)} is missing`,
      };
      return;
    }
    const fd = openSync(path, "r");
    let content: Buffer;
    try {
      const size = fstatSync(fd).size;
      content = Buffer.allocUnsafe(size);
      let off = 0;
      while (off < size) {
        const n = readSync(fd, content, off, size - off, off);
        if (n <= 0) break;
        off += n;
      }
    } finally {
      closeSync(fd);
    }
    if (
      content.length < SEGMENT_HEADER_BYTES ||
      !content.subarray(0, 8).equals(SEGMENT_MAGIC) ||
      content.readUInt32BE(8) !== segment
    ) {
      yield { kind: "fault", file: path, offset: 0, reason: "segment header is missing or corrupt" };
      return;
    }
    let off = SEGMENT_HEADER_BYTES;
    while (off < content.length) {
      const r = parseRecord(content, off);
      if (!r.ok) {
        yield { kind: "fault", file: path, offset: off, reason: r.reason };
        return;
      }
      if (r.type === RECORD_BLOCK)
        yield { kind: "block", height: r.height, payload: r.payload, file: path, offset: off };
      else if (r.type === RECORD_SEAL) {
        // The seal commits to every byte before it: a sealed segment proves itself whole.
        const digest = r.payload.subarray(4, 36);
        if (!sha256(content.subarray(0, off)).equals(digest)) {
          yield {
            kind: "fault",
            file: path,
            offset: off,
            reason: "seal digest does not match the segment's contents",
          };
          return;
        }
        yield {
          kind: "seal",
          height: r.height,
          file: path,
          offset: off,
          blockCount: r.payload.readUInt32BE(0),
          digest: Buffer.from(r.payload.subarray(4, 36)),
        };
      } else {
        yield { kind: "fault", file: path, offset: off, reason: `unknown record type ${r.type}` };
        return;
      }
      off += r.length;
    }
  }
}
