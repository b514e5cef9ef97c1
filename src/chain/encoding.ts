/**
 * Deterministic binary encoding: big-endian fixed-width integers and length-prefixed byte
 * strings. Every decoder checks bounds before it reads, so truncated or hostile input
 * throws a {@link DecodeError} instead of reading past the end.
 */
import { CodedError } from "../util/errors.js";

export enum DecodeErrorCode {
  Truncated = "DECODE_TRUNCATED",
  Invalid = "DECODE_INVALID",
}

export class DecodeError extends CodedError<DecodeErrorCode> {}

/** Grows a buffer as values are appended; `finish()` returns the exact bytes written. */
export class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(initialBytes = 256) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = Math.max(16, this.buf.length * 2);
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): this {
    this.reserve(1);
    this.buf.writeUInt8(v, this.pos);
    this.pos += 1;
    return this;
  }

  u16(v: number): this {
    this.reserve(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u32(v: number): this {
    this.reserve(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  u64(v: bigint): this {
    this.reserve(8);
    this.buf.writeBigUInt64BE(v, this.pos);
    this.pos += 8;
    return this;
  }

  /** Writes bytes of a size both sides know (hashes, keys, signatures). */
  fixed(bytes: Uint8Array, size: number): this {
    if (bytes.length !== size) throw new RangeError(`Expected ${size} bytes, got ${bytes.length}`);
    this.reserve(size);
    this.buf.set(bytes, this.pos);
    this.pos += size;
    return this;
  }

  /** Writes a u16 length then the bytes. */
  bytes16(bytes: Uint8Array): this {
    if (bytes.length > 0xffff) throw new RangeError(`Byte string of ${bytes.length} bytes exceeds 65535`);
    this.u16(bytes.length);
    this.reserve(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }

  /** Writes a u32 length then the bytes. */
  bytes32(bytes: Uint8Array): this {
    this.u32(bytes.length);
    this.reserve(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/** Reads values written by {@link Writer}, checking bounds on every read. */
export class Reader {
  private pos = 0;

  constructor(
    private readonly buf: Buffer,
    private readonly what = "value",
  ) {}

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) {
      throw new DecodeError(
        { code: DecodeErrorCode.Truncated, offset: this.pos, need: n },
        `Cannot decode ${this.what}: truncated at offset ${this.pos} (needs ${n} more bytes, has ${this.remaining})`,
      );
    }
  }

  u8(): number {
    this.need(1);
    const v = this.buf.readUInt8(this.pos);
    this.pos += 1;
    return v;
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  fixed(size: number): Buffer {
    this.need(size);
    const v = this.buf.subarray(this.pos, this.pos + size);
    this.pos += size;
    return v;
  }

  bytes16(max = 0xffff): Buffer {
    const n = this.u16();
    if (n > max) this.invalid(`byte string of ${n} bytes exceeds the limit of ${max}`);
    return this.fixed(n);
  }

  bytes32(max: number): Buffer {
    const n = this.u32();
    if (n > max) this.invalid(`byte string of ${n} bytes exceeds the limit of ${max}`);
    return this.fixed(n);
  }

  /** The bytes between two offsets already read, without copying. */
  slice(from: number, to: number): Buffer {
    return this.buf.subarray(from, to);
  }

  /** Throws unless every byte was consumed: trailing bytes make an encoding non-canonical. */
  end(): void {
    if (this.remaining !== 0) this.invalid(`${this.remaining} trailing bytes`);
  }

  invalid(reason: string): never {
    throw new DecodeError(
      { code: DecodeErrorCode.Invalid, offset: this.pos },
      `Cannot decode ${this.what}: ${reason} at offset ${this.pos}`,
    );
  }
}
