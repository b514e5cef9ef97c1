/**
 * Serving a range of blocks to a peer: the records behind a run of index entries, read a
 * contiguous run per call and reframed in place as `u32 length | block` frames.
 */
import { readSync } from "node:fs";
import {
  type IndexEntry,
  parseRecord,
  RECORD_BODY_PREFIX_BYTES,
  RECORD_HEADER_BYTES,
} from "./segment-format.js";
import type { SegmentSet } from "./segment-set.js";

/**
 * The blocks whose index entries are `entries` (heights from `from` on) framed for a peer,
 * as many as fit in `maxBytes` but at least one, each record's checksum checked.
 */
export function frameBlocks(segs: SegmentSet, entries: IndexEntry[], from: number, maxBytes: number): Buffer {
  // The run of entries to send: stop at the byte bound, keeping at least one block.
  // A frame is the payload and its u32 length; a record, the payload and its header.
  const frameOf = (e: IndexEntry): number => 4 + e.length - RECORD_HEADER_BYTES - RECORD_BODY_PREFIX_BYTES;
  let n = 0;
  let bytes = 0;
  while (n < entries.length && (n === 0 || bytes + frameOf(entries[n]!) <= maxBytes)) {
    bytes += frameOf(entries[n]!);
    n++;
  }
  // Runs of records are read straight into the response, each at the spot its first
  // frame starts, and every payload is then moved down over its record's header: a frame
  // is never longer than its record, so nothing is overwritten before it is read.
  let recordBytes = 0;
  for (let k = 0; k < n; k++) recordBytes += entries[k]!.length;
  const out = Buffer.allocUnsafe(recordBytes);
  let w = 0;
  for (let i = 0; i < n; ) {
    // Records i..j-1 are contiguous in one segment.
    let j = i + 1;
    while (
      j < n &&
      entries[j]!.segment === entries[i]!.segment &&
      entries[j]!.offset === entries[j - 1]!.offset + entries[j - 1]!.length
    )
      j++;
    const start = entries[i]!.offset;
    const span = entries[j - 1]!.offset + entries[j - 1]!.length - start;
    const runAt = w;
    const got = readSync(segs.fd(entries[i]!.segment), out, runAt, span, start);
    const run = out.subarray(runAt, runAt + got);
    for (let k = i; k < j; k++) {
      const e = entries[k]!;
      const payload = segs.blockPayload(parseRecord(run, e.offset - start), from + k, e);
      const payloadAt = payload.byteOffset - out.byteOffset;
      out.writeUInt32BE(payload.length, w);
      out.copyWithin(w + 4, payloadAt, payloadAt + payload.length);
      w += 4 + payload.length;
    }
    i = j;
  }
  return out.subarray(0, w);
}
