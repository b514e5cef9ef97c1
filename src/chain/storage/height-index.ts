/**
 * The ledger's height index `heights.idx` as an open file: its header, reading entries
 * (one or a run), writing entries after the last, and cutting it back. The format is in
 * segment-format.ts; which entries are current is the ledger store's business.
 */
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { fsyncDir } from "../../util/fs-atomic.js";
import { LedgerError, LedgerErrorCode } from "./ledger-types.js";
import {
  decodeIndexEntry,
  encodeIndexEntry,
  INDEX_ENTRY_BYTES,
  INDEX_HEADER_BYTES,
  INDEX_MAGIC,
  type IndexEntry,
} from "./segment-format.js";

/** The open height index of one ledger directory. */
export class HeightIndex {
  private constructor(private readonly fd: number) {}

  /** Opens (creating if needed) the index in the ledger directory `dir`, checking its magic. */
  static open(dir: string): HeightIndex {
    const idxPath = join(dir, "heights.idx");
    const fresh = !existsSync(idxPath);
    const fd = openSync(idxPath, fresh ? "w+" : "r+");
    if (fresh || fstatSync(fd).size < INDEX_HEADER_BYTES) {
      const h = Buffer.alloc(INDEX_HEADER_BYTES);
      INDEX_MAGIC.copy(h, 0);
      h.writeBigUInt64BE(1n, 8);
      ftruncateSync(fd, 0);
      writeSync(fd, h, 0, h.length, 0);
      fsyncSync(fd);
      fsyncDir(dir);
    } else {
      const h = Buffer.alloc(INDEX_HEADER_BYTES);
      readSync(fd, h, 0, h.length, 0);
      if (!h.subarray(0, 8).equals(INDEX_MAGIC)) {
        throw new LedgerError(
          { code: LedgerErrorCode.Corrupt, path: idxPath },
          `Cannot open ledger index ${idxPath}: bad magic; delete it to rebuild it from the segments`,
        );
      }
    }
    return new HeightIndex(fd);
  }

  /** The stored entry for a height, or undefined if it is absent or fails its checksum. */
  entry(height: number): IndexEntry | undefined {
    const b = Buffer.alloc(INDEX_ENTRY_BYTES);
    const n = readSync(
      this.fd,
      b,
      0,
      INDEX_ENTRY_BYTES,
      INDEX_HEADER_BYTES + (height - 1) * INDEX_ENTRY_BYTES,
    );
    return n === INDEX_ENTRY_BYTES ? decodeIndexEntry(b) : undefined;
  }

  /** The stored entries of heights from..to in one read, ending early at one that is absent or fails its checksum. */
  entries(from: number, to: number): IndexEntry[] {
    const out: IndexEntry[] = [];
    const b = Buffer.allocUnsafe((to - from + 1) * INDEX_ENTRY_BYTES);
    const got = readSync(this.fd, b, 0, b.length, INDEX_HEADER_BYTES + (from - 1) * INDEX_ENTRY_BYTES);
    for (let off = 0; off + INDEX_ENTRY_BYTES <= got; off += INDEX_ENTRY_BYTES) {
      const e = decodeIndexEntry(b.subarray(off, off + INDEX_ENTRY_BYTES));
      if (!e) break;
      out.push(e);
    }
    return out;
  }

  /**
   * How many entries from height 1 pass their checksum and name one of `segments`: the
   * heights the index may still hold after a crash.
   */
  checkedCount(segments: number[]): number {
    let count = Math.max(0, Math.floor((fstatSync(this.fd).size - INDEX_HEADER_BYTES) / INDEX_ENTRY_BYTES));
    const all = Buffer.allocUnsafe(count * INDEX_ENTRY_BYTES);
    readSync(this.fd, all, 0, all.length, INDEX_HEADER_BYTES);
    for (let h = 1; h <= count; h++) {
      const e = decodeIndexEntry(all.subarray((h - 1) * INDEX_ENTRY_BYTES, h * INDEX_ENTRY_BYTES));
      if (!e || !segments.includes(e.segment)) {
        count = h - 1;
        break;
      }
    }
    return count;
  }

  /** Writes `entries` for the heights after `count`, then fsyncs the index. */
  write(count: number, entries: IndexEntry[]): void {
    const idx = Buffer.concat(entries.map(encodeIndexEntry));
    writeSync(this.fd, idx, 0, idx.length, INDEX_HEADER_BYTES + count * INDEX_ENTRY_BYTES);
    fsyncSync(this.fd);
  }

  /** Cuts the index after the entry of height `count` (no fsync: see {@link sync}). */
  truncate(count: number): void {
    ftruncateSync(this.fd, INDEX_HEADER_BYTES + count * INDEX_ENTRY_BYTES);
  }

  sync(): void {
    fsyncSync(this.fd);
  }

  close(): void {
    closeSync(this.fd);
  }
}
