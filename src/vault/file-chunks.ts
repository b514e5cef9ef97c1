/**
 * Reads a file from an offset and cuts it into content-defined chunks. Read buffers come
 * from a pool and are reused: on this class of machine touching fresh memory costs more
 * than chunking it (~0.6 GB/s against ~2 GB/s), so a backup must not allocate per read.
 * Each chunk handed out pins its buffer until the receiver calls `release`.
 */

import { copyInto } from "../util/bytes.js";
import { BufferPool } from "./buffer-pool.js";
import { type ChunkerParams, nextCut } from "./chunker.js";
import type { ReadHandle } from "./source.js";

// 2 MiB reads: large sequential I/O; a buffer holds a read plus a carried-over maximal chunk.
// (4 MiB reads were no faster in bench/backup and cost a backup 10 MiB more of buffers.)
const READ_BYTES = 2 * 1024 * 1024;
// Below 1 MiB of room a buffer is not worth another read: the tail moves to a fresh one.
const MIN_READ_BYTES = 1024 * 1024;

/** A pool sized for {@link forEachChunk} with these chunker parameters. */
export function chunkBufferPool(params: ChunkerParams, max: number, shared = false): BufferPool {
  return new BufferPool(READ_BYTES + params.maxBytes, max, shared);
}

/**
 * Chunks `fh` from `pos` to its end. `onChunk` gets each chunk, its offset in the file, and
 * a `release` to call once it no longer needs the bytes (at once if it keeps nothing).
 */
export async function forEachChunk(
  fh: ReadHandle,
  pos: number,
  params: ChunkerParams,
  gear: Uint32Array,
  pool: BufferPool,
  onChunk: (data: Buffer, offset: number, release: () => void) => Promise<void> | void,
  onRead?: (bytes: number) => void,
): Promise<void> {
  let held: { buf: Buffer; refs: number } | undefined;
  const unref = (h: { buf: Buffer; refs: number }): void => {
    if (--h.refs === 0) pool.release(h.buf);
  };
  let start = 0;
  let end = 0;
  let eof = false;
  // File offset of the current buffer's first byte.
  let base = pos;
  try {
    for (;;) {
      // Keep a maximal chunk buffered ahead of `start`: then every cut is final and no byte
      // is scanned twice. Read into the current buffer while it has room (chunks handed out
      // lie before `start` and are not disturbed); else carry the tail into a fresh one.
      if (!eof && end - start < params.maxBytes) {
        let room = held ? held.buf.length - end : 0;
        if (room < MIN_READ_BYTES) {
          const next = { buf: await pool.acquire(), refs: 1 };
          if (held) {
            copyInto(next.buf, 0, held.buf.subarray(start, end));
            unref(held);
          }
          base += start;
          end -= start;
          start = 0;
          held = next;
          room = next.buf.length - end;
        }
        const want = Math.min(READ_BYTES, room);
        const { bytesRead } = await fh.read(held!.buf, end, want, base + end);
        end += bytesRead;
        onRead?.(bytesRead);
        // A regular file reads short only at its end.
        if (bytesRead < want) eof = true;
        continue;
      }
      if (start === end) return;
      const cut = nextCut(held!.buf, start, end, eof, params, gear);
      // With a maximal chunk buffered the chunker always cuts: anything else is a bug.
      if (cut <= start)
        throw new Error(`Chunker made no cut at ${base + start} with ${end - start} bytes buffered`);
      const h = held!;
      const data = h.buf.subarray(start, cut);
      const offset = base + start;
      start = cut;
      h.refs++;
      let released = false;
      await onChunk(data, offset, () => {
        if (!released) {
          released = true;
          unref(h);
        }
      });
    }
  } finally {
    if (held) unref(held);
  }
}
