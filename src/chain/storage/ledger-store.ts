/**
 * The ledger: blocks as append-only segment files plus a fixed-width height index.
 * Appends are fsynced before they return. On open, a torn tail (from a crash mid-write)
 * is cut off and the index is re-derived from the segments where it lags or was torn.
 * A sealed segment is never modified in place: a rollback into one writes a shortened
 * copy under the same name (a new inode), so hard links taken by checkpoints keep theirs.
 *
 * The parts: height-index.ts (the index file), segment-set.ts (the segment files and the
 * one being appended to), ledger-reconcile.ts (the steps of {@link LedgerStore.open}'s
 * repair), block-frames.ts (ranges for peers); formats in segment-format.ts.
 */
import { fsyncSync, mkdirSync } from "node:fs";
import { crashPoint, failPoint } from "../../util/crash-points.js";
import { fsyncDir } from "../../util/fs-atomic.js";
import type { Logger } from "../../util/logger.js";
import { frameBlocks } from "./block-frames.js";
import { HeightIndex } from "./height-index.js";
import {
  checkContiguous,
  dropTornLastSegment,
  entryMatches,
  listLedgerSegments,
  scanSegments,
} from "./ledger-reconcile.js";
import {
  LedgerError,
  LedgerErrorCode,
  type LedgerItem,
  type LedgerMark,
  type LedgerOptions,
  type SegmentInfo,
} from "./ledger-types.js";
import { encodeRecord, type IndexEntry, RECORD_BLOCK } from "./segment-format.js";
import { SegmentSet } from "./segment-set.js";

export * from "./ledger-types.js";

export class LedgerStore {
  private readonly dir: string;
  private readonly index: HeightIndex;
  private readonly segs: SegmentSet;
  private tipEntry: IndexEntry | undefined;
  private count = 0;

  private constructor(
    private readonly opts: LedgerOptions,
    private readonly logger: Logger,
  ) {
    this.dir = opts.dir;
    mkdirSync(this.dir, { recursive: true });
    this.index = HeightIndex.open(this.dir);
    this.segs = new SegmentSet(this.dir, logger);
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
    return this.segs.path(n);
  }

  /** The index entry for a height, or undefined above the tip. */
  entry(height: number): IndexEntry | undefined {
    if (height < 1 || height > this.count) return undefined;
    if (height === this.count) return this.tipEntry;
    return this.index.entry(height);
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
    return Buffer.from(this.segs.blockPayload(this.segs.readRecordAt(e), height, e));
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
    return frameBlocks(this.segs, this.indexEntries(from, last), from, maxBytes);
  }

  /** The index entries of heights from..to, all present. */
  private indexEntries(from: number, to: number): IndexEntry[] {
    // The tip's entry may not be in the index file yet: it is kept in memory.
    const fromFile = Math.min(to, this.count - 1);
    const out = fromFile >= from ? this.index.entries(from, fromFile) : [];
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

  /** Where the ledger ends now: the blocks it holds and its files, for {@link revertTo}. */
  mark(): LedgerMark {
    return {
      count: this.count,
      segments: [...this.segs.list],
      active: this.segs.active?.segment,
      size: this.segs.active?.size ?? 0,
    };
  }

  /**
   * Takes the ledger back to `m`, a mark this store took before appends that must be undone
   * (the state commit after them failed, as on a full disk): the segment that was active at
   * the mark is cut back in place (it was not sealed then; a seal written since goes with
   * the cut) and the segments made since are deleted. Unlike {@link truncate}, which copies
   * a sealed segment it cuts, this needs no free space.
   */
  revertTo(m: LedgerMark): void {
    if (m.count > this.count)
      throw new RangeError(`Cannot revert the ledger to ${m.count} blocks: it holds ${this.count}`);
    if (m.count === this.count) return;
    this.rewind(m);
    this.index.sync();
    this.logger.info({ height: m.count }, "Ledger reverted to before a failed commit");
  }

  /**
   * Reads the files again as open does (index against segments, torn tail, re-indexing),
   * after a failure left this view behind them (a truncate cut short by a full disk).
   */
  reload(): void {
    this.segs.close();
    this.reconcile();
  }

  /** Appends blocks that extend the tip, then fsyncs the segments and the index. */
  append(items: LedgerItem[]): void {
    if (items.length === 0) return;
    const before = this.mark();
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
  private undoAppend(before: LedgerMark): void {
    try {
      this.rewind(before);
    } catch (err) {
      this.logger.error(
        { err: (err as Error).message },
        "Could not undo a failed ledger append; restart the node to repair the ledger tail",
      );
    }
  }

  /** Files and view back to a mark: later segments deleted, the one active then cut in place, the index cut, reopened. */
  private rewind(m: LedgerMark): void {
    this.segs.restore(m);
    this.index.truncate(m.count);
    this.reconcile();
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
      if (!this.segs.active) {
        this.segs.openNew(it.height);
        created = true;
      }
      const a = this.segs.active!;
      const rec = encodeRecord(RECORD_BLOCK, it.height, it.bytes);
      this.segs.write(rec);
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
      if (a.size >= this.opts.segmentBytes) this.segs.seal(it.height);
    }
    if (this.segs.active) fsyncSync(this.segs.active.fd);
    if (created) fsyncDir(this.dir);
    crashPoint("ledger.before-index");
    failPoint("ledger.before-index");
    this.index.write(this.count, entries);
    this.count += entries.length;
    this.tipEntry = entries[entries.length - 1];
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
    this.index.truncate(height);
    this.index.sync();
    this.segs.cutAt(first);
    this.count = height;
    this.tipEntry = height > 0 ? this.index.entry(height) : undefined;
    this.logger.info({ height }, "Ledger truncated");
  }

  /** The segment files in order, for checkpoints and backups. */
  segments(): SegmentInfo[] {
    return this.segs.segments();
  }

  close(): void {
    this.segs.close();
    this.index.close();
  }

  /**
   * Brings the index and the segments into agreement after a crash: drops index entries
   * that do not match a record, then indexes records past the last good entry, cutting a
   * torn record at the end of the last segment.
   */
  private reconcile(): void {
    this.segs.list = listLedgerSegments(this.dir);
    checkContiguous(this.dir, this.segs.list);
    // A last segment whose header never reached the disk holds nothing committed.
    dropTornLastSegment(this.segs, this.logger);

    // Every entry's checksum, since one append writes many entries and a crash may keep a
    // later page of the index but not an earlier one; then the last entry against its record.
    let count = this.index.checkedCount(this.segs.list);
    while (count > 0 && !entryMatches(this.index, this.segs, count)) count--;
    this.index.truncate(count);
    this.count = count;
    this.tipEntry = count > 0 ? this.index.entry(count) : undefined;

    // Scan forward from the last good entry.
    this.segs.sealedLast = false;
    const { added, sealedLast } = scanSegments(this.segs, this.count, this.tipEntry, this.opts, this.logger);
    this.segs.sealedLast = sealedLast;
    if (added.length > 0) {
      this.logger.info(
        { from: this.count + 1, blocks: added.length },
        "Re-indexed ledger blocks from the segments",
      );
      this.index.write(this.count, added);
      this.count += added.length;
      this.tipEntry = added[added.length - 1];
    }
    // Reopen the last unsealed segment for appending, hashing what it holds so far.
    const lastSeg = this.segs.list[this.segs.list.length - 1];
    if (lastSeg !== undefined && !this.segs.sealedLast) this.segs.openActive(lastSeg);
  }
}
