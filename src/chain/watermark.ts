/**
 * The signing watermark: the highest height this validator key has signed. It is written
 * durably (temp file, fsync, rename) before every signature, and a height at or below it
 * is never signed, so a restarted or restored validator cannot double-sign.
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
}

export class Watermark {
  private current: number;

  constructor(readonly path: string) {
    this.current = Watermark.read(path).height;
  }

  /** Reads the watermark file; a missing file means nothing was ever signed. */
  static read(path: string): WatermarkRecord {
    if (!existsSync(path)) return { height: 0, updatedAtMs: 0 };
    try {
      const j = JSON.parse(readFileSync(path, "utf8")) as WatermarkRecord;
      if (!Number.isSafeInteger(j.height) || j.height < 0)
        throw new Error("height is not a non-negative integer");
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

  /** Durably records that `height` is about to be signed; throws if that could double-sign. */
  advance(height: number): void {
    if (height <= this.current) {
      throw new WatermarkError(
        { code: WatermarkErrorCode.WouldDoubleSign, height, watermark: this.current },
        `Refusing to sign height ${height}: the signing watermark is ${this.current}`,
      );
    }
    writeFileAtomic(this.path, `${JSON.stringify({ height, updatedAtMs: Date.now() })}\n`, 0o600);
    this.current = height;
  }
}
