/**
 * The signing watermark: the highest height this validator key has signed. It is written
 * durably (temp file, fsync, rename) before every signature, and a height at or below it
 * is never signed, so a restarted or restored validator cannot double-sign.
 *
 * With it goes the block about to be signed at that height, unsigned: a validator killed
 * between the watermark and storing its block signs that same content again when it
 * restarts (ed25519 signatures are deterministic, so it is the same signature, not a second
 * one) instead of losing the height for good, which would halt a chain it alone produces.
 */
import { existsSync, readFileSync } from "node:fs";
import { CodedError } from "../util/errors.js";
import { writeFileAtomic } from "../util/fs-atomic.js";

export enum WatermarkErrorCode {
  WouldDoubleSign = "WATERMARK_WOULD_DOUBLE_SIGN",
  Corrupt = "WATERMARK_CORRUPT",
}

export class WatermarkError extends CodedError<WatermarkErrorCode> {}

export interface WatermarkRecord {
  height: number;
  updatedAtMs: number;
  /** The block being signed at `height`, encoded with a zero signature (base64). */
  pending?: string;
}

export class Watermark {
  private current: number;
  private pendingBlock: Buffer | undefined;

  constructor(readonly path: string) {
    const r = Watermark.read(path);
    this.current = r.height;
    this.pendingBlock = r.pending === undefined ? undefined : Buffer.from(r.pending, "base64");
  }

  /** Reads the watermark file; a missing file means nothing was ever signed. */
  static read(path: string): WatermarkRecord {
    if (!existsSync(path)) return { height: 0, updatedAtMs: 0 };
    try {
      const j = JSON.parse(readFileSync(path, "utf8")) as WatermarkRecord;
      if (!Number.isSafeInteger(j.height) || j.height < 0)
        throw new Error("height is not a non-negative integer");
      if (j.pending !== undefined && typeof j.pending !== "string")
        throw new Error("pending is not base64 text");
      return j;
    } catch (err) {
      throw new WatermarkError(
        { code: WatermarkErrorCode.Corrupt, path },
        `Cannot read signing watermark ${path}: ${(err as Error).message}; restore it with the key's backup before this validator signs again`,
      );
    }
  }

  get height(): number {
    return this.current;
  }

  /** The unsigned block recorded with the watermark's height, if any (see the module comment). */
  get pending(): Buffer | undefined {
    return this.pendingBlock;
  }

  /**
   * Durably records that `height` is about to be signed, with the block to be signed there
   * (encoded with a zero signature); throws if that could double-sign.
   */
  advance(height: number, pending?: Buffer): void {
    if (height <= this.current) {
      throw new WatermarkError(
        { code: WatermarkErrorCode.WouldDoubleSign, height, watermark: this.current },
        `Refusing to sign height ${height}: the signing watermark is ${this.current}`,
      );
    }
    const record: WatermarkRecord = { height, updatedAtMs: Date.now() };
    if (pending) record.pending = pending.toString("base64");
    writeFileAtomic(this.path, `${JSON.stringify(record)}\n`, 0o600);
    this.current = height;
    this.pendingBlock = pending;
  }
}
