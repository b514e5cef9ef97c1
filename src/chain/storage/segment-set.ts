/**
 * The segment files of an open ledger: which exist, whether the last is sealed, the one
 * being appended to (with the running hash and block count its seal will need), and a
 * bounded cache of descriptors for reading. Also cuts segments back for a truncate and
 * puts them back after a failed append. The ledger store decides when; this module does it.
 */
import { createHash, type Hash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  truncateSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { crashPoint } from "../../util/crash-points.js";
import { copyFilePrefix, fsyncDir } from "../../util/fs-atomic.js";
import type { Logger } from "../../util/logger.js";
import { LedgerError, LedgerErrorCode, type SegmentInfo } from "./ledger-types.js";
import {
  encodeRecord,
  encodeSegmentHeader,
  type IndexEntry,
  parseRecord,
  RECORD_BLOCK,
  RECORD_SEAL,
  type RecordRead,
  SEGMENT_HEADER_BYTES,
  segmentFileName,
} from "./segment-format.js";

/** The segment being appended to. */
export interface Active {
  segment: number;
  fd: number;
  size: number;
  hash: Hash;
  blocks: number;
}

// 64 open segment descriptors: enough for sequential reads across segments, bounded so a
// large ledger does not exhaust the process's file descriptors.
const FD_CACHE_MAX = 64;

/** The segment files of one open ledger directory (see the module comment). */
export class SegmentSet {
  /** Segment numbers on disk, in order. */
  list: number[] = [];
  sealedLast = false;
  active: Active | undefined;
  private readonly fds = new Map<number, number>();

  constructor(
    private readonly dir: string,
    private readonly logger: Logger,
  ) {}

  path(n: number): string {
    return join(this.dir, segmentFileName(n));
  }

  /** A descriptor to read segment n with, from the cache or opened (and cached) now. */
  fd(n: number): number {
    let fd = this.fds.get(n);
    if (fd !== undefined) return fd;
    if (this.active?.segment === n) return this.active.fd;
    const path = this.path(n);
    if (!existsSync(path)) {
      throw new LedgerError(
        { code: LedgerErrorCode.MissingSegment, segment: n, path },
        `Cannot read ledger: segment ${path} is missing; run ledger repair or restore the ledger from a backup`,
      );
    }
    fd = openSync(path, "r");
    if (this.fds.size >= FD_CACHE_MAX) {
      const [oldN, oldFd] = this.fds.entries().next().value as [number, number];
      closeSync(oldFd);
      this.fds.delete(oldN);
    }
    this.fds.set(n, fd);
    return fd;
  }

  closeFd(n: number): void {
    const fd = this.fds.get(n);
    if (fd !== undefined) {
      closeSync(fd);
      this.fds.delete(n);
    }
  }

  /** Reads and checks the record an index entry points to. */
  readRecordAt(e: IndexEntry): RecordRead {
    const buf = Buffer.allocUnsafe(e.length);
    const n = readSync(this.fd(e.segment), buf, 0, e.length, e.offset);
    return parseRecord(buf.subarray(0, n), 0);
  }

  /** The payload of a block record read for `height`, or the error that says what is wrong where. */
  blockPayload(r: RecordRead, height: number, e: IndexEntry): Buffer {
    if (!r.ok || r.type !== RECORD_BLOCK || r.height !== height) {
      const reason = r.ok ? `record holds height ${r.height} of type ${r.type}` : r.reason;
      throw new LedgerError(
        { code: LedgerErrorCode.Corrupt, height, segment: e.segment, offset: e.offset },
        `Cannot read block ${height}: ${reason} in ${this.path(e.segment)} at offset ${e.offset}; run ledger repair`,
      );
    }
    return r.payload;
  }

  /** Appends bytes to the active segment, feeding them to its running hash. */
  write(buf: Buffer): void {
    const a = this.active!;
    if (process.env.CHAINVAULT_CRASH_AT?.startsWith("ledger.torn-record")) {
      // Half a record reaches the file, then the process dies: a torn write.
      writeSync(a.fd, buf, 0, buf.length >> 1, a.size);
      crashPoint("ledger.torn-record");
    }
    let off = 0;
    while (off < buf.length) off += writeSync(a.fd, buf, off, buf.length - off, a.size + off);
    a.size += buf.length;
    a.hash.update(buf);
  }

  /** Creates the next segment, its first block at `firstHeight`, as the active one. */
  openNew(firstHeight: number): void {
    const n = this.list.length === 0 ? 0 : this.list[this.list.length - 1]! + 1;
    const fd = openSync(this.path(n), "w+");
    this.list.push(n);
    this.active = { segment: n, fd, size: 0, hash: createHash("sha256"), blocks: 0 };
    this.sealedLast = false;
    this.write(encodeSegmentHeader(n, firstHeight));
  }

  /** Ends the active segment with a seal record (block count and digest), fsyncs and closes it. */
  seal(lastHeight: number): void {
    const a = this.active!;
    const digest = a.hash.copy().digest();
    const payload = Buffer.alloc(4 + 32);
    payload.writeUInt32BE(a.blocks, 0);
    digest.copy(payload, 4);
    this.write(encodeRecord(RECORD_SEAL, lastHeight, payload));
    fsyncSync(a.fd);
    closeSync(a.fd);
    this.active = undefined;
    this.sealedLast = true;
    crashPoint("ledger.after-seal");
    this.logger.debug({ segment: a.segment, lastHeight, blocks: a.blocks }, "Ledger segment sealed");
  }

  /**
   * The segment side of a truncate whose first removed block is `first`: segments wholly
   * after it are deleted; the one it is in is dropped if the cut falls at its start, and
   * otherwise cut after the records before it (a sealed one by writing a shortened copy).
   */
  cutAt(first: IndexEntry): void {
    if (this.active) {
      closeSync(this.active.fd);
      this.active = undefined;
    }
    while (this.list.length > 0 && this.list[this.list.length - 1]! > first.segment) {
      const n = this.list.pop()!;
      this.closeFd(n);
      unlinkSync(this.path(n));
    }
    const s = first.segment;
    this.closeFd(s);
    if (first.offset === SEGMENT_HEADER_BYTES) {
      // The cut falls at the start of segment s: drop it; the previous one stays sealed.
      this.list.pop();
      unlinkSync(this.path(s));
      this.sealedLast = this.list.length > 0;
    } else {
      this.rewritePrefix(s, first.offset);
    }
    fsyncDir(this.dir);
  }

  /** Keeps the first `length` bytes of segment n as the active segment, never editing a sealed file in place. */
  private rewritePrefix(n: number, length: number): void {
    const path = this.path(n);
    const tmp = `${path}.truncate-tmp`;
    try {
      copyFilePrefix(path, tmp, length);
    } catch (err) {
      // A full disk: the copy is given up, the sealed file stays as it was.
      rmSync(tmp, { force: true });
      throw err;
    }
    renameSync(tmp, path);
    this.openActive(n);
  }

  /** Opens segment n for appending, hashing and counting what it holds (for its future seal). */
  openActive(n: number): void {
    this.closeFd(n);
    const fd = openSync(this.path(n), "r+");
    const size = fstatSync(fd).size;
    const content = Buffer.allocUnsafe(size);
    readSync(fd, content, 0, size, 0);
    let blocks = 0;
    for (let off = SEGMENT_HEADER_BYTES; off < size; ) {
      const r = parseRecord(content, off);
      if (!r.ok) break;
      if (r.type === RECORD_BLOCK) blocks++;
      off += r.length;
    }
    this.active = { segment: n, fd, size, hash: createHash("sha256").update(content), blocks };
    this.sealedLast = false;
  }

  /**
   * The segment side of undoing a failed append: closes the active segment, deletes the
   * segments the append created and cuts the one it was appending to back to its size
   * before. The caller then cuts the index and reconciles.
   */
  restore(before: { segments: number[]; active: number | undefined; size: number }): void {
    if (this.active) closeSync(this.active.fd);
    this.active = undefined;
    for (const n of this.list) {
      if (!before.segments.includes(n)) {
        this.closeFd(n);
        rmSync(this.path(n), { force: true });
      }
    }
    this.list = before.segments;
    if (before.active !== undefined) {
      this.closeFd(before.active);
      truncateSync(this.path(before.active), before.size);
    }
  }

  /** The segment files in order, for checkpoints and backups. */
  segments(): SegmentInfo[] {
    return this.list.map((n) => {
      const isLast = n === this.list[this.list.length - 1];
      const sealed = !isLast || this.sealedLast;
      const size = this.active?.segment === n ? this.active.size : fstatSync(this.fd(n)).size;
      return { segment: n, path: this.path(n), sealed, sizeBytes: size };
    });
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
    if (this.active) closeSync(this.active.fd);
    this.active = undefined;
  }
}
