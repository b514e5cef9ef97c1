/**
 * The ledger's errors and the shapes its callers pass in and get back: options, items to
 * append and segment descriptions. Shared by the ledger's modules and re-exported from
 * ledger-store.ts, which callers import.
 */
import { CodedError } from "../../util/errors.js";

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

/** Where a ledger ended at some moment: its block count and its files (LedgerStore.mark). */
export interface LedgerMark {
  count: number;
  segments: number[];
  /** The segment then active (not sealed), and its size. */
  active: number | undefined;
  size: number;
}
