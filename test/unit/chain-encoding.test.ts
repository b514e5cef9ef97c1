// Goal: prove the binary Writer/Reader is canonical and bounds-checked; method: round-trip values at their limits, pin the byte layout, and feed truncated, oversized and over-long inputs to every reader method.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DecodeError, DecodeErrorCode, Reader, Writer } from "../../src/chain/encoding.js";

/** Asserts that `fn` throws a DecodeError with the given code and returns it for further checks. */
function assertDecodeError(fn: () => unknown, code: DecodeErrorCode): DecodeError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof DecodeError, `expected a DecodeError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  return caught;
}

test("Writer and Reader round-trip every value type at its limits", () => {
  const hash = Buffer.alloc(32, 0xab);
  const short = Buffer.from("hello");
  const long = Buffer.alloc(70_000, 7);
  const buf = new Writer(4)
    .u8(0)
    .u8(0xff)
    .u16(0)
    .u16(0xffff)
    .u32(0)
    .u32(0xffff_ffff)
    .u64(0n)
    .u64(2n ** 64n - 1n)
    .fixed(hash, 32)
    .bytes16(short)
    .bytes16(Buffer.alloc(0))
    .bytes32(long)
    .finish();

  const r = new Reader(buf);
  assert.equal(r.u8(), 0);
  assert.equal(r.u8(), 0xff);
  assert.equal(r.u16(), 0);
  assert.equal(r.u16(), 0xffff);
  assert.equal(r.u32(), 0);
  assert.equal(r.u32(), 0xffff_ffff);
  assert.equal(r.u64(), 0n);
  assert.equal(r.u64(), 2n ** 64n - 1n);
  assert.deepEqual(r.fixed(32), hash);
  assert.deepEqual(r.bytes16(), short);
  assert.equal(r.bytes16().length, 0);
  assert.deepEqual(r.bytes32(long.length), long);
  assert.equal(r.remaining, 0);
  assert.equal(r.offset, buf.length);
  r.end();
});

test("Writer emits big-endian integers and u16/u32 length prefixes", () => {
  const buf = new Writer()
    .u16(0x0102)
    .u32(0x03040506)
    .u64(0x0708090a0b0c0d0en)
    .bytes16(Buffer.from([0xaa]))
    .bytes32(Buffer.from([0xbb, 0xcc]))
    .finish();
  assert.equal(
    buf.toString("hex"),
    ["0102", "03040506", "0708090a0b0c0d0e", "0001aa", "00000002bbcc"].join(""),
  );
});

test("Writer grows past its initial capacity without losing earlier bytes", () => {
  const w = new Writer(1);
  for (let i = 0; i < 1000; i++) w.u8(i & 0xff);
  const buf = w.finish();
  assert.equal(buf.length, 1000);
  for (let i = 0; i < 1000; i++) assert.equal(buf[i], i & 0xff, `byte ${i}`);
});

test("Writer with an initial capacity of 0 grows on its first write", () => {
  const buf = new Writer(0).u8(1).u32(7).finish();
  assert.deepEqual([...buf], [1, 0, 0, 0, 7]);
});

test("every Reader method throws DECODE_TRUNCATED instead of reading past the end", () => {
  const cases: Array<[string, Buffer, (r: Reader) => unknown]> = [
    ["u8", Buffer.alloc(0), (r) => r.u8()],
    ["u16", Buffer.alloc(1), (r) => r.u16()],
    ["u32", Buffer.alloc(3), (r) => r.u32()],
    ["u64", Buffer.alloc(7), (r) => r.u64()],
    ["fixed", Buffer.alloc(31), (r) => r.fixed(32)],
    ["bytes16 prefix", Buffer.alloc(1), (r) => r.bytes16()],
    ["bytes16 body", Buffer.from([0x00, 0x05, 1, 2, 3]), (r) => r.bytes16()],
    ["bytes32 prefix", Buffer.alloc(3), (r) => r.bytes32(100)],
    ["bytes32 body", Buffer.from([0, 0, 0, 4, 1, 2, 3]), (r) => r.bytes32(100)],
  ];
  for (const [name, buf, read] of cases) {
    const err = assertDecodeError(() => read(new Reader(buf, "probe")), DecodeErrorCode.Truncated);
    assert.match(err.message, /^Cannot decode probe: truncated at offset \d+/, name);
  }
});

test("a truncation error reports the offset and the bytes still needed", () => {
  const r = new Reader(Buffer.from([1, 2, 3]), "header");
  r.u8();
  const err = assertDecodeError(() => r.u32(), DecodeErrorCode.Truncated);
  assert.equal(err.detail.offset, 1);
  assert.equal(err.detail.need, 4);
  assert.match(err.message, /offset 1 \(needs 4 more bytes, has 2\)/);
});

test("Writer.bytes16 accepts 65535 bytes and refuses 65536 with a RangeError", () => {
  const max = new Writer().bytes16(Buffer.alloc(0xffff, 1)).finish();
  assert.equal(max.length, 2 + 0xffff);
  assert.equal(new Reader(max).bytes16().length, 0xffff);
  assert.throws(() => new Writer().bytes16(Buffer.alloc(0x10000)), RangeError);
});

test("Reader.bytes16 and bytes32 refuse a length above the caller's limit with DECODE_INVALID", () => {
  const b16 = new Writer().bytes16(Buffer.alloc(11)).finish();
  assert.equal(new Reader(b16).bytes16(11).length, 11);
  const err16 = assertDecodeError(() => new Reader(b16, "payload").bytes16(10), DecodeErrorCode.Invalid);
  assert.match(err16.message, /byte string of 11 bytes exceeds the limit of 10/);

  // A hostile length prefix with no body must be refused by the limit, not by allocation or truncation.
  const hostile = Buffer.from([0xff, 0xff, 0xff, 0xff]);
  assertDecodeError(() => new Reader(hostile).bytes32(1024), DecodeErrorCode.Invalid);
});

test("Reader.end refuses trailing bytes with DECODE_INVALID naming how many", () => {
  const r = new Reader(Buffer.from([1, 2, 3]), "record");
  r.u8();
  const err = assertDecodeError(() => r.end(), DecodeErrorCode.Invalid);
  assert.match(err.message, /^Cannot decode record: 2 trailing bytes at offset 1$/);
  r.u16();
  r.end();
});

test("Writer.fixed refuses bytes whose length differs from the declared size", () => {
  assert.throws(() => new Writer().fixed(Buffer.alloc(31), 32), RangeError);
  assert.throws(() => new Writer().fixed(Buffer.alloc(33), 32), RangeError);
});

test("Writer refuses integers outside their width instead of wrapping", () => {
  assert.throws(() => new Writer().u8(256), RangeError);
  assert.throws(() => new Writer().u16(0x10000), RangeError);
  assert.throws(() => new Writer().u32(-1), RangeError);
  assert.throws(() => new Writer().u64(2n ** 64n), RangeError);
});
