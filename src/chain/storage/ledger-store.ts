/**
 * The ledger: blocks as append-only segment files plus a fixed-width height index.
 * Appends are fsynced before they return. On open, a torn tail (from a crash mid-write)
 * is cut off and the index is re-derived from the segments where it lags or was torn.
 * A sealed segment is never modified in place: a rollback into one writes a shortened
 * copy under the same name (a new inode), so hard links taken by checkpoints keep theirs.
 */
import { createHash, type Hash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { crashPoint, failPoint } from "../../util/crash-points.js";
import { CodedError } from "../../util/errors.js";
import { copyFilePrefix, fsyncDir } from "../../util/fs-atomic.js";
import type { Logger } from "../../util/logger.js";
import { HEADER_BYTES } from "../block.js";
import { sha256 } from "../crypto.js";
import { Reader } from "../encoding.js";
import {
  decodeIndexEntry,
  encodeIndexEntry,
  encodeRecord,
  encodeSegmentHeader,
  INDEX_ENTRY_BYTES,
  INDEX_HEADER_BYTES,
  INDEX_MAGIC,
  type IndexEntry,
  parseRecord,
  parseSegmentFileName,
  RECORD_BLOCK,
  RECORD_BODY_PREFIX_BYTES,
  RECORD_HEADER_BYTES,
  RECORD_SEAL,
  type RecordRead,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
  segmentFileName,
} from "./segment-format.js";

export enum LedgerErrorCode {
  Corrupt = "LEDGER_CORRUPT",
  MissingSegment = "LEDGER_MISSING_SEGMENT",
  NotFound = "LEDGER_NOT_FOUND",
}

export class LedgerError extends CodedError<LedgerErrorCode> {}

export interface LedgerOptions {
  dir: string;
  /** A segment is sealed once it reaches this size. */
  segmentBytes: number;
  /**
   * Heights up to here are committed in the state, so they must be in the ledger: a bad
   * record at or below it is damage to report, never a torn tail to cut.
   */
  committedHeight?: number;
  /** Weight of a block, from its height and proposer: the index stores the running sum. */
  weightOf: (height: number, proposer: number) => bigint;
}

/** A block ready to be appended, with the values the index keeps. */
export interface LedgerItem {
  height: number;
  bytes: Buffer;
  hash: Buffer;
  timestampMs: number;
  /** Weight of this block alone. */
  weight: bigint;
}

/** A segment file as a backup or checkpoint sees it. */
export interface SegmentInfo {
  segment: number;
  path: string;
  sealed: boolean;
  sizeBytes: number;
}

interface Active {
  segment: number;
  fd: number;
  size: number;
  hash: Hash;
  blocks: number;
}

// 64 open segment descriptors: enough for sequential reads across segments, bounded so a
// large ledger does not exhaust the process's file descriptors.
const FD_CACHE_MAX = 64;

export class LedgerStore {
  private readonly dir: string;
  private indexFd: number;
  private segmentsList: number[] = [];
  private sealedLast = false;
  private active: Active | undefined;
  private tipEntry: IndexEntry | undefined;
  private count = 0;
  private readonly fds = new Map<number, number>();

  private constructor(
    private readonly opts: LedgerOptions,
    private readonly logger: Logger,
  ) {
    this.dir = opts.dir;
    mkdirSync(this.dir, { recursive: true });
    const idxPath = join(this.dir, "heights.idx");
    const fresh = !existsSync(idxPath);
    this.indexFd = openSync(idxPath, fresh ? "w+" : "r+");
    if (fresh || fstatSync(this.indexFd).size < INDEX_HEADER_BYTES) {
      const h = Buffer.alloc(INDEX_HEADER_BYTES);
      INDEX_MAGIC.copy(h, 0);
      h.writeBigUInt64BE(1n, 8);
      ftruncateSync(this.indexFd, 0);
      writeSync(this.indexFd, h, 0, h.length, 0);
      fsyncSync(this.indexFd);
      fsyncDir(this.dir);
    } else {
      const h = Buffer.alloc(INDEX_HEADER_BYTES);
      readSync(this.indexFd, h, 0, h.length, 0);
      if (!h.subarray(0, 8).equals(INDEX_MAGIC)) {
        throw new LedgerError(
          { code: LedgerErrorCode.Corrupt, path: idxPath },
          `Cannot open ledger index ${idxPath}: bad magic; delete it to rebuild it from the segments`,
        );
      }
    }
  }

  /** Opens (creating if needed) the ledger in `opts.dir`, repairing a torn tail. */
  static open(opts: LedgerOptions, logger: Logger): LedgerStore {
    const s = new LedgerStore(opts, logger);
    try {
      s.reconcile();
    } catch (err) {
      s.close();
      throw err;
    }
    return s;
  }

  get tipHeight(): number {
    return this.count;
  }

  /** The index entry of the highest block, or undefined for an empty ledger. */
  get tip(): IndexEntry | undefined {
    return this.tipEntry;
  }

  segmentPath(n: number): string {
    return join(this.dir, segmentFileName(n));
  }

  /** The index entry for a height, or undefined above the tip. */
  entry(height: number): IndexEntry | undefined {
    if (height < 1 || height > this.count) return undefined;
    if (height === this.count) return this.tipEntry;
    return this.readIndexEntry(height);
  }

  private readIndexEntry(height: number): IndexEntry | undefined {
    const b = Buffer.alloc(INDEX_ENTRY_BYTES);
    const n = readSync(
      this.indexFd,
      b,
      0,
      INDEX_ENTRY_BYTES,
      INDEX_HEADER_BYTES + (height - 1) * INDEX_ENTRY_BYTES,
    );
    return n === INDEX_ENTRY_BYTES ? decodeIndexEntry(b) : undefined;
  }

  private segFd(n: number): number {
    let fd = this.fds.get(n);
    if (fd !== undefined) return fd;
    if (this.active?.segment === n) return this.active.fd;
    const path = this.segmentPath(n);
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

  private closeSegFd(n: number): void {
    const fd = this.fds.get(n);
    if (fd !== undefined) {
      closeSync(fd);
      this.fds.delete(n);
    }
  }

  /** Reads the encoded block at a height, checking its record checksum. */
  readBlockBytes(height: number): Buffer {
    const e = this.entry(height);
    if (!e) {
      throw new LedgerError(
        { code: LedgerErrorCode.NotFound, height },
        `Cannot read block ${height}: the ledger ends at ${this.count}`,
      );
    }
    return Buffer.from(this.blockPayload(this.readRecordAt(e), height, e));
  }

  /**
   * The blocks from `from` to `to` framed for a peer (u32 length, then the block), as many
   * as fit in `maxBytes` but at least one. Index entries are read in one call, and records
   * that lie next to each other in a segment in one call each; every record's checksum
   * is checked as {@link readBlockBytes} does.
   */
  readBlockFrames(from: number, to: number, maxBytes: number): Buffer {
    const last = Math.min(to, this.count);
    if (from < 1 || from > last) return Buffer.alloc(0);
    const entries = this.indexEntries(from, last);
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
      const got = readSync(this.segFd(entries[i]!.segment), out, runAt, span, start);
      const run = out.subarray(runAt, runAt + got);
      for (let k = i; k < j; k++) {
        const e = entries[k]!;
        const payload = this.blockPayload(parseRecord(run, e.offset - start), from + k, e);
        const payloadAt = payload.byteOffset - out.byteOffset;
        out.writeUInt32BE(payload.length, w);
        out.copyWithin(w + 4, payloadAt, payloadAt + payload.length);
        w += 4 + payload.length;
      }
      i = j;
    }
    return out.subarray(0, w);
  }

  /** The index entries of heights from..to, all present. */
  private indexEntries(from: number, to: number): IndexEntry[] {
    const out: IndexEntry[] = [];
    // The tip's entry may not be in the index file yet: it is kept in memory.
    const fromFile = Math.min(to, this.count - 1);
    if (fromFile >= from) {
      const b = Buffer.allocUnsafe((fromFile - from + 1) * INDEX_ENTRY_BYTES);
      const got = readSync(this.indexFd, b, 0, b.length, INDEX_HEADER_BYTES + (from - 1) * INDEX_ENTRY_BYTES);
      for (let off = 0; off + INDEX_ENTRY_BYTES <= got; off += INDEX_ENTRY_BYTES) {
        const e = decodeIndexEntry(b.subarray(off, off + INDEX_ENTRY_BYTES));
        if (!e) break;
        out.push(e);
      }
    }
    for (let h = from + out.length; h <= to; h++) {
      const e = this.entry(h);
      if (!e)
        throw new LedgerError(
          { code: LedgerErrorCode.NotFound, height: h },
          `Cannot read block ${h}: the ledger ends at ${this.count}`,
        );
      out.push(e);
    }
    return out;
  }

  /** The payload of a block record read for `height`, or the error that says what is wrong where. */
  private blockPayload(r: RecordRead, height: number, e: IndexEntry): Buffer {
    if (!r.ok || r.type !== RECORD_BLOCK || r.height !== height) {
      const reason = r.ok ? `record holds height ${r.height} of type ${r.type}` : r.reason;
      throw new LedgerError(
        { code: LedgerErrorCode.Corrupt, height, segment: e.segment, offset: e.offset },
        `Cannot read block ${height}: ${reason} in ${this.segmentPath(e.segment)} at offset ${e.offset}; run ledger repair`,
      );
    }
    return r.payload;
  }

  /** Reads and checks the record an index entry points to. */
  private readRecordAt(e: IndexEntry): RecordRead {
    const buf = Buffer.allocUnsafe(e.length);
    const n = readSync(this.segFd(e.segment), buf, 0, e.length, e.offset);
    return parseRecord(buf.subarray(0, n), 0);
  }

  /** Appends blocks that extend the tip, then fsyncs the segments and the index. */
  append(items: LedgerItem[]): void {
    if (items.length === 0) return;
    const before = {
      segments: [...this.segmentsList],
      active: this.active?.segment,
      size: this.active?.size ?? 0,
    };
    try {
      this.appendUnchecked(items);
    } catch (err) {
      this.undoAppend(before);
      throw err;
    }
  }

  /**
   * Puts the files back as they were before a failed append (a write error such as a full
   * disk, not a crash), so that the ledger on disk never holds blocks the caller was told failed.
   */
  private undoAppend(before: { segments: number[]; active: number | undefined; size: number }): void {
    try {
      if (this.active) closeSync(this.active.fd);
      this.active = undefined;
      for (const n of this.segmentsList) {
        if (!before.segments.includes(n)) {
          this.closeSegFd(n);
          rmSync(this.segmentPath(n), { force: true });
        }
      }
      this.segmentsList = before.segments;
      if (before.active !== undefined) {
        this.closeSegFd(before.active);
        truncateSync(this.segmentPath(before.active), before.size);
      }
      ftruncateSync(this.indexFd, INDEX_HEADER_BYTES + this.count * INDEX_ENTRY_BYTES);
      this.reconcile();
    } catch (err) {
      this.logger.error(
        { err: (err as Error).message },
        "Could not undo a failed ledger append; restart the node to repair the ledger tail",
      );
    }
  }

  private appendUnchecked(items: LedgerItem[]): void {
    const entries: IndexEntry[] = [];
    let weight = this.tipEntry?.weight ?? 0n;
    let created = false;
    for (const it of items) {
      if (it.height !== this.count + entries.length + 1) {
        throw new RangeError(
          `Ledger append out of order: height ${it.height} after ${this.count + entries.length}`,
        );
      }
      if (!this.active) {
        this.openNewSegment(it.height);
        created = true;
      }
      const a = this.active!;
      const rec = encodeRecord(RECORD_BLOCK, it.height, it.bytes);
      this.writeActive(rec);
      weight += it.weight;
      entries.push({
        segment: a.segment,
        offset: a.size - rec.length,
        length: rec.length,
        weight,
        timestampMs: it.timestampMs,
        hash: it.hash,
      });
      a.blocks++;
      if (a.size >= this.opts.segmentBytes) this.sealActive(it.height);
    }
    if (this.active) fsyncSync(this.active.fd);
    if (created) fsyncDir(this.dir);
    crashPoint("ledger.before-index");
    failPoint("ledger.before-index");
    const idx = Buffer.concat(entries.map(encodeIndexEntry));
    writeSync(this.indexFd, idx, 0, idx.length, INDEX_HEADER_BYTES + this.count * INDEX_ENTRY_BYTES);
    fsyncSync(this.indexFd);
    this.count += entries.length;
    this.tipEntry = entries[entries.length - 1];
  }

  private writeActive(buf: Buffer): void {
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

  private openNewSegment(firstHeight: number): void {
    const n = this.segmentsList.length === 0 ? 0 : this.segmentsList[this.segmentsList.length - 1]! + 1;
    const fd = openSync(this.segmentPath(n), "w+");
    this.segmentsList.push(n);
    this.active = { segment: n, fd, size: 0, hash: createHash("sha256"), blocks: 0 };
    this.sealedLast = false;
    this.writeActive(encodeSegmentHeader(n, firstHeight));
  }

  private sealActive(lastHeight: number): void {
    const a = this.active!;
    const digest = a.hash.copy().digest();
    const payload = Buffer.alloc(4 + 32);
    payload.writeUInt32BE(a.blocks, 0);
    digest.copy(payload, 4);
    this.writeActive(encodeRecord(RECORD_SEAL, lastHeight, payload));
    fsyncSync(a.fd);
    closeSync(a.fd);
    this.active = undefined;
    this.sealedLast = true;
    crashPoint("ledger.after-seal");
    this.logger.debug({ segment: a.segment, lastHeight, blocks: a.blocks }, "Ledger segment sealed");
  }

  /**
   * Removes every block above `height`. Segments wholly above it are deleted; the one it
   * ends in is cut after its record (a sealed one by writing a shortened copy).
   */
  truncate(height: number): void {
    if (height >= this.count) return;
    if (height < 0) throw new RangeError(`Cannot truncate the ledger to negative height ${height}`);
    const first = this.entry(height + 1);
    if (!first)
      throw new LedgerError(
        { code: LedgerErrorCode.Corrupt, height },
        `Cannot truncate the ledger: index entry ${height + 1} is unreadable`,
      );
    // Index first: it must never point past the segments.
    ftruncateSync(this.indexFd, INDEX_HEADER_BYTES + height * INDEX_ENTRY_BYTES);
    fsyncSync(this.indexFd);
    if (this.active) {
      closeSync(this.active.fd);
      this.active = undefined;
    }
    while (this.segmentsList.length > 0 && this.segmentsList[this.segmentsList.length - 1]! > first.segment) {
      const n = this.segmentsList.pop()!;
      this.closeSegFd(n);
      unlinkSync(this.segmentPath(n));
    }
    const s = first.segment;
    this.closeSegFd(s);
    if (first.offset === SEGMENT_HEADER_BYTES) {
      // The cut falls at the start of segment s: drop it; the previous one stays sealed.
      this.segmentsList.pop();
      unlinkSync(this.segmentPath(s));
      this.sealedLast = this.segmentsList.length > 0;
    } else {
      this.rewritePrefix(s, first.offset);
    }
    fsyncDir(this.dir);
    this.count = height;
    this.tipEntry = height > 0 ? this.readIndexEntry(height) : undefined;
    this.logger.info({ height }, "Ledger truncated");
  }

  /** Keeps the first `length` bytes of segment n as the active segment, never editing a sealed file in place. */
  private rewritePrefix(n: number, length: number): void {
    const path = this.segmentPath(n);
    const tmp = `${path}.truncate-tmp`;
    copyFilePrefix(path, tmp, length);
    renameSync(tmp, path);
    this.openActive(n);
  }

  /** Opens segment n for appending, hashing and counting what it holds (for its future seal). */
  private openActive(n: number): void {
    this.closeSegFd(n);
    const fd = openSync(this.segmentPath(n), "r+");
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

  /** The segment files in order, for checkpoints and backups. */
  segments(): SegmentInfo[] {
    return this.segmentsList.map((n) => {
      const isLast = n === this.segmentsList[this.segmentsList.length - 1];
      const sealed = !isLast || this.sealedLast;
      const size = this.active?.segment === n ? this.active.size : fstatSync(this.segFd(n)).size;
      return { segment: n, path: this.segmentPath(n), sealed, sizeBytes: size };
    });
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
    if (this.active) closeSync(this.active.fd);
    this.active = undefined;
    closeSync(this.indexFd);
  }

  /**
   * Brings the index and the segments into agreement after a crash: drops index entries
   * that do not match a record, then indexes records past the last good entry, cutting a
   * torn record at the end of the last segment.
   */
  private reconcile(): void {
    const names = readdirSync(this.dir);
    for (const name of names) {
      if (name.endsWith(".truncate-tmp")) unlinkSync(join(this.dir, name));
    }
    this.segmentsList = names
      .map(parseSegmentFileName)
      .filter((n): n is number => n !== undefined)
      .sort((a, b) => a - b);
    this.segmentsList.forEach((n, i) => {
      const expected = i;
      if (n !== expected) {
        throw new LedgerError(
          { code: LedgerErrorCode.MissingSegment, segment: expected },
          `Cannot open ledger ${this.dir}: segment ${segmentFileName(expected)} is missing; run ledger repair or restore the ledger from a backup`,
        );
      }
    });
    // A last segment whose header never reached the disk holds nothing committed.
    const last = this.segmentsList[this.segmentsList.length - 1];
    if (last !== undefined && !this.headerOk(last)) {
      // Only a file too short to hold its header is a segment whose creation was cut by a
      // crash; a longer one with a bad header is damage, which repair must look at.
      if (statSync(this.segmentPath(last)).size > SEGMENT_HEADER_BYTES) {
        throw new LedgerError(
          { code: LedgerErrorCode.Corrupt, segment: last, path: this.segmentPath(last) },
          `Cannot open ledger: the header of ${this.segmentPath(last)} is corrupt; run ledger repair or restore the ledger from a backup`,
        );
      }
      this.logger.warn({ segment: last }, "Removing a ledger segment whose header was torn by a crash");
      unlinkSync(this.segmentPath(last));
      this.segmentsList.pop();
    }

    // Every entry's checksum, since one append writes many entries and a crash may keep a
    // later page of the index but not an earlier one; then the last entry against its record.
    let count = Math.max(
      0,
      Math.floor((fstatSync(this.indexFd).size - INDEX_HEADER_BYTES) / INDEX_ENTRY_BYTES),
    );
    const all = Buffer.allocUnsafe(count * INDEX_ENTRY_BYTES);
    readSync(this.indexFd, all, 0, all.length, INDEX_HEADER_BYTES);
    for (let h = 1; h <= count; h++) {
      const e = decodeIndexEntry(all.subarray((h - 1) * INDEX_ENTRY_BYTES, h * INDEX_ENTRY_BYTES));
      if (!e || !this.segmentsList.includes(e.segment)) {
        count = h - 1;
        break;
      }
    }
    while (count > 0 && !this.entryMatches(count)) count--;
    ftruncateSync(this.indexFd, INDEX_HEADER_BYTES + count * INDEX_ENTRY_BYTES);
    this.count = count;
    this.tipEntry = count > 0 ? this.readIndexEntry(count) : undefined;

    // Scan forward from the last good entry.
    let seg: number | undefined;
    let off: number;
    if (this.tipEntry) {
      seg = this.tipEntry.segment;
      off = this.tipEntry.offset + this.tipEntry.length;
    } else {
      seg = this.segmentsList[0];
      off = SEGMENT_HEADER_BYTES;
    }
    const added: IndexEntry[] = [];
    let weight = this.tipEntry?.weight ?? 0n;
    this.sealedLast = false;
    while (seg !== undefined) {
      const path = this.segmentPath(seg);
      const fd = this.segFd(seg);
      const size = fstatSync(fd).size;
      const content = Buffer.allocUnsafe(size);
      readSync(fd, content, 0, size, 0);
      const isLast = seg === this.segmentsList[this.segmentsList.length - 1];
      let sealed = false;
      while (off < size) {
        const r = parseRecord(content, off);
        if (!r.ok) {
          const expectedHeight = this.count + added.length + 1;
          if (!isLast || expectedHeight <= (this.opts.committedHeight ?? 0)) {
            throw new LedgerError(
              { code: LedgerErrorCode.Corrupt, segment: seg, offset: off },
              `Cannot open ledger: ${r.reason} in ${path} at offset ${off}; run ledger repair`,
            );
          }
          this.logger.warn(
            { segment: seg, offset: off, reason: r.reason },
            "Cutting a torn record from the ledger tail",
          );
          this.closeSegFd(seg);
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
        const height = this.count + added.length + 1;
        if (r.type !== RECORD_BLOCK || r.height !== height) {
          throw new LedgerError(
            { code: LedgerErrorCode.Corrupt, segment: seg, offset: off },
            `Cannot open ledger: expected block ${height} in ${path} at offset ${off}, found type ${r.type} height ${r.height}; run ledger repair`,
          );
        }
        const header = decodeHeaderOnly(r.payload);
        weight += this.opts.weightOf(height, header.proposer);
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
        this.sealedLast = sealed;
        break;
      }
      seg = this.segmentsList[this.segmentsList.indexOf(seg) + 1];
      off = SEGMENT_HEADER_BYTES;
    }
    if (added.length > 0) {
      this.logger.info(
        { from: this.count + 1, blocks: added.length },
        "Re-indexed ledger blocks from the segments",
      );
      const idx = Buffer.concat(added.map(encodeIndexEntry));
      writeSync(this.indexFd, idx, 0, idx.length, INDEX_HEADER_BYTES + this.count * INDEX_ENTRY_BYTES);
      fsyncSync(this.indexFd);
      this.count += added.length;
      this.tipEntry = added[added.length - 1];
    }
    // Reopen the last unsealed segment for appending, hashing what it holds so far.
    const lastSeg = this.segmentsList[this.segmentsList.length - 1];
    if (lastSeg !== undefined && !this.sealedLast) this.openActive(lastSeg);
  }

  private headerOk(n: number): boolean {
    const fd = openSync(this.segmentPath(n), "r");
    try {
      const b = Buffer.alloc(SEGMENT_HEADER_BYTES);
      const got = readSync(fd, b, 0, b.length, 0);
      return (
        got === SEGMENT_HEADER_BYTES && b.subarray(0, 8).equals(SEGMENT_MAGIC) && b.readUInt32BE(8) === n
      );
    } finally {
      closeSync(fd);
    }
  }

  private entryMatches(height: number): boolean {
    const e = this.readIndexEntry(height);
    if (!e || !this.segmentsList.includes(e.segment)) return false;
    const r = this.readRecordAt(e);
    if (!r.ok || r.type !== RECORD_BLOCK || r.height !== height) return false;
    return decodeHeaderOnly(r.payload).hash.equals(e.hash);
  }
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
