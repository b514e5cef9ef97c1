/**
 * The steps that bring a ledger's index and segments into agreement when it is opened (or
 * after a failed append): list the segments, drop a last segment whose header a crash
 * tore, find the last index entry that matches its record, and index the records after
 * it, cutting a torn record at the end of the last segment. The ledger store runs them in order.
 */
import {
  closeSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readdirSync,
  readSync,
  statSync,
  unlinkSync,
} from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../util/logger.js";
import { HEADER_BYTES } from "../block.js";
import { sha256 } from "../crypto.js";
import { Reader } from "../encoding.js";
import type { HeightIndex } from "./height-index.js";
import { LedgerError, LedgerErrorCode, type LedgerOptions } from "./ledger-types.js";
import {
  type IndexEntry,
  parseRecord,
  parseSegmentFileName,
  RECORD_BLOCK,
  RECORD_SEAL,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
  segmentFileName,
} from "./segment-format.js";
import type { SegmentSet } from "./segment-set.js";

/** Deletes leftover `*.truncate-tmp` files in `dir` and returns its segment numbers in order. */
export function listLedgerSegments(dir: string): number[] {
  const names = readdirSync(dir);
  for (const name of names) {
    if (name.endsWith(".truncate-tmp")) unlinkSync(join(dir, name));
  }
  return names
    .map(parseSegmentFileName)
    .filter((n): n is number => n !== undefined)
    .sort((a, b) => a - b);
}

/** Throws if segment numbers do not run 0, 1, 2, … without a gap. */
export function checkContiguous(dir: string, segments: number[]): void {
  segments.forEach((n, i) => {
    const expected = i;
    if (n !== expected) {
      throw new LedgerError(
        { code: LedgerErrorCode.MissingSegment, segment: expected },
        `Cannot open ledger ${dir}: segment ${segmentFileName(expected)} is missing; run ledger repair or restore the ledger from a backup`,
      );
    }
  });
}

/** Removes the last segment if its header never reached the disk; it holds nothing committed. */
export function dropTornLastSegment(segs: SegmentSet, logger: Logger): void {
  const last = segs.list[segs.list.length - 1];
  if (last !== undefined && !headerOk(segs, last)) {
    // Only a file too short to hold its header is a segment whose creation was cut by a
    // crash; a longer one with a bad header is damage, which repair must look at.
    if (statSync(segs.path(last)).size > SEGMENT_HEADER_BYTES) {
      throw new LedgerError(
        { code: LedgerErrorCode.Corrupt, segment: last, path: segs.path(last) },
        `Cannot open ledger: the header of ${segs.path(last)} is corrupt; run ledger repair or restore the ledger from a backup`,
      );
    }
    logger.warn({ segment: last }, "Removing a ledger segment whose header was torn by a crash");
    unlinkSync(segs.path(last));
    segs.list.pop();
  }
}

function headerOk(segs: SegmentSet, n: number): boolean {
  const fd = openSync(segs.path(n), "r");
  try {
    const b = Buffer.alloc(SEGMENT_HEADER_BYTES);
    const got = readSync(fd, b, 0, b.length, 0);
    return got === SEGMENT_HEADER_BYTES && b.subarray(0, 8).equals(SEGMENT_MAGIC) && b.readUInt32BE(8) === n;
  } finally {
    closeSync(fd);
  }
}

/** Whether the index entry of `height` points to a block record of that height and hash. */
export function entryMatches(index: HeightIndex, segs: SegmentSet, height: number): boolean {
  const e = index.entry(height);
  if (!e || !segs.list.includes(e.segment)) return false;
  const r = segs.readRecordAt(e);
  if (!r.ok || r.type !== RECORD_BLOCK || r.height !== height) return false;
  return decodeHeaderOnly(r.payload).hash.equals(e.hash);
}

/**
 * Reads the records after the last good index entry `tip` (the entry of height `count`),
 * returning the index entries they need and whether the last segment ends with a seal.
 * A bad record is cut if it is in the last segment above `opts.committedHeight`, and
 * otherwise fails the open.
 */
export function scanSegments(
  segs: SegmentSet,
  count: number,
  tip: IndexEntry | undefined,
  opts: Pick<LedgerOptions, "committedHeight" | "weightOf">,
  logger: Logger,
): { added: IndexEntry[]; sealedLast: boolean } {
  let seg: number | undefined;
  let off: number;
  if (tip) {
    seg = tip.segment;
    off = tip.offset + tip.length;
  } else {
    seg = segs.list[0];
    off = SEGMENT_HEADER_BYTES;
  }
  const added: IndexEntry[] = [];
  let weight = tip?.weight ?? 0n;
  let sealedLast = false;
  while (seg !== undefined) {
    const path = segs.path(seg);
    const fd = segs.fd(seg);
    const size = fstatSync(fd).size;
    const content = Buffer.allocUnsafe(size);
    readSync(fd, content, 0, size, 0);
    const isLast = seg === segs.list[segs.list.length - 1];
    let sealed = false;
    while (off < size) {
      const r = parseRecord(content, off);
      if (!r.ok) {
        const expectedHeight = count + added.length + 1;
        if (!isLast || expectedHeight <= (opts.committedHeight ?? 0)) {
          throw new LedgerError(
            { code: LedgerErrorCode.Corrupt, segment: seg, offset: off },
            `Cannot open ledger: ${r.reason} in ${path} at offset ${off}; run ledger repair`,
          );
        }
        logger.warn(
          { segment: seg, offset: off, reason: r.reason },
          "Cutting a torn record from the ledger tail",
        );
        segs.closeFd(seg);
        const wfd = openSync(path, "r+");
        ftruncateSync(wfd, off);
        fsyncSync(wfd);
        closeSync(wfd);
        break;
      }
      if (r.type === RECORD_SEAL) {
        sealed = true;
        off += r.length;
        break;
      }
      const height = count + added.length + 1;
      if (r.type !== RECORD_BLOCK || r.height !== height) {
        throw new LedgerError(
          { code: LedgerErrorCode.Corrupt, segment: seg, offset: off },
          `Cannot open ledger: expected block ${height} in ${path} at offset ${off}, found type ${r.type} height ${r.height}; run ledger repair`,
        );
      }
      const header = decodeHeaderOnly(r.payload);
      weight += opts.weightOf(height, header.proposer);
      added.push({
        segment: seg,
        offset: off,
        length: r.length,
        weight,
        timestampMs: header.timestampMs,
        hash: header.hash,
      });
      off += r.length;
    }
    if (isLast) {
      sealedLast = sealed;
      break;
    }
    seg = segs.list[segs.list.indexOf(seg) + 1];
    off = SEGMENT_HEADER_BYTES;
  }
  return { added, sealedLast };
}

/** Reads the header fields the index needs without decoding transactions. */
function decodeHeaderOnly(payload: Buffer): { hash: Buffer; proposer: number; timestampMs: number } {
  const r = new Reader(payload, "block header");
  r.u8();
  r.u64();
  r.fixed(32);
  const ts = Number(r.u64());
  const proposer = r.u16();
  // The hash covers the whole header, a fixed-size prefix of the block.
  return { hash: blockHashOfPrefix(payload), proposer, timestampMs: ts };
}

function blockHashOfPrefix(payload: Buffer): Buffer {
  return sha256(payload.subarray(0, HEADER_BYTES));
}
