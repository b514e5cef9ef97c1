// Goal: prove the FastCDC chunker cuts within its bounds, loses no byte, depends on the key, gives the same cuts however the input is split into reads, and survives edits; method: chunk seeded pseudo-random data (AES-256-CTR keystream) with the real gear tables, compare whole-buffer cuts with a streaming caller fed random read sizes, and compare chunk hashes before and after an edit.
import assert from "node:assert/strict";
import { createCipheriv, createHash } from "node:crypto";
import { test } from "node:test";
import {
  type ChunkerParams,
  cutPoints,
  DEFAULT_CHUNKER_PARAMS,
  gearTable,
  nextCut,
} from "../../src/vault/chunker.js";

const KiB = 1024;
const MiB = 1024 * KiB;
// Same ratios as the defaults (min = avg / 4, max = 4 avg) at 1/128 the size: thousands of
// chunks per megabyte, so size statistics are tight and the tests stay fast.
const SMALL: ChunkerParams = { minBytes: 2 * KiB, avgBytes: 8 * KiB, maxBytes: 32 * KiB };

const KEY_A = new Uint8Array(32).fill(0xa1);
const KEY_B = new Uint8Array(32).fill(0xb2);
const GEAR_A = gearTable(KEY_A);
const GEAR_B = gearTable(KEY_B);

/** `sizeBytes` of pseudo-random bytes, the same for the same seed on every run. */
function seededBytes(sizeBytes: number, seed: number): Uint8Array {
  const cipher = createCipheriv("aes-256-ctr", new Uint8Array(32).fill(seed & 0xff), new Uint8Array(16));
  // Encrypts one zero block at a time into the output: fresh memory is slow to touch on small
  // virtual machines, so this touches only the output.
  const zeros = new Uint8Array(Math.min(sizeBytes, 1 * MiB));
  const out = new Uint8Array(sizeBytes);
  for (let offset = 0; offset < sizeBytes; offset += zeros.length) {
    out.set(cipher.update(zeros.subarray(0, Math.min(zeros.length, sizeBytes - offset))), offset);
  }
  return out;
}

// 32 MiB, shared by the tests that need about 30 chunks of the default size.
const RANDOM = seededBytes(32 * MiB, 6);

/** A small deterministic generator (mulberry32) for read sizes. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/**
 * FastCDC NC-2 written plainly from the paper, one byte at a time, as the model the fast
 * scanner must match: no cut in the first minBytes, a mask of log2(avg) + 2 top bits before
 * avgBytes and of log2(avg) - 2 after, a forced cut at maxBytes.
 */
function referenceCuts(data: Uint8Array, params: ChunkerParams, gear: Uint32Array): number[] {
  const bits = Math.log2(params.avgBytes);
  const maskS = (-1 << (32 - bits - 2)) >>> 0;
  const maskL = (-1 << (32 - bits + 2)) >>> 0;
  const cuts: number[] = [];
  let start = 0;
  while (start < data.length) {
    const limit = Math.min(data.length, start + params.maxBytes);
    let cut = limit;
    let h = 0;
    for (let i = start + params.minBytes; i < limit; i++) {
      h = ((h << 1) + gear[data[i]!]!) >>> 0;
      if ((h & (i - start < params.avgBytes ? maskS : maskL)) === 0) {
        cut = i + 1;
        break;
      }
    }
    cuts.push(cut);
    start = cut;
  }
  return cuts;
}

function chunksOf(data: Uint8Array, cuts: number[]): Uint8Array[] {
  return cuts.map((end, k) => data.subarray(k === 0 ? 0 : cuts[k - 1], end));
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Plays a reader with a fixed buffer: it reads `readSize()` bytes at a time (at most
 * `maxReadBytes`), cuts what it can, and moves the unfinished tail to the front before the next read.
 */
function streamCuts(
  data: Uint8Array,
  params: ChunkerParams,
  maxReadBytes: number,
  readSize: () => number,
): number[] {
  const cuts: number[] = [];
  // Room for the tail nextCut may leave (under maxBytes) plus one read.
  const buf = new Uint8Array(params.maxBytes + maxReadBytes);
  let filled = 0; // valid bytes in buf
  let bufOffset = 0; // offset of buf[0] in the input
  let read = 0;
  while (read < data.length) {
    const n = Math.min(readSize(), maxReadBytes, data.length - read);
    buf.set(data.subarray(read, read + n), filled);
    filled += n;
    read += n;
    const eof = read === data.length;
    let start = 0;
    while (start < filled) {
      const cut = nextCut(buf, start, filled, eof, params, GEAR_A);
      if (cut === -1) {
        assert.ok(filled - start < params.maxBytes, "a cut is decided once maxBytes are buffered");
        break;
      }
      assert.ok(cut > start && cut <= filled);
      cuts.push(bufOffset + cut);
      start = cut;
    }
    buf.copyWithin(0, start, filled);
    filled -= start;
    bufOffset += start;
  }
  return cuts;
}

test("every chunk but the last is within [minBytes, maxBytes] and the chunks rebuild the input", () => {
  const inputs = [seededBytes(4 * MiB, 1), new Uint8Array(1 * MiB), new Uint8Array(1 * MiB).fill(0x5a)];
  for (const data of inputs) {
    const cuts = [...cutPoints(data, SMALL, GEAR_A)];
    const chunks = chunksOf(data, cuts);
    assert.equal(cuts.at(-1), data.length);
    for (const chunk of chunks.slice(0, -1)) {
      assert.ok(
        chunk.length >= SMALL.minBytes && chunk.length <= SMALL.maxBytes,
        `chunk of ${chunk.length} B`,
      );
    }
    assert.ok(chunks.at(-1)!.length > 0 && chunks.at(-1)!.length <= SMALL.maxBytes);
    assert.deepEqual(Buffer.concat(chunks), Buffer.from(data));
  }
});

test("the fast scanner cuts exactly where a byte-at-a-time reference implementation does", () => {
  const data = seededBytes(3 * MiB, 10);
  const paramSets: ChunkerParams[] = [
    SMALL,
    { minBytes: 64, avgBytes: 256, maxBytes: 1000 },
    { minBytes: 1001, avgBytes: 4 * KiB, maxBytes: 4 * KiB + 7 },
    { minBytes: 3 * KiB + 5, avgBytes: 16 * KiB, maxBytes: 100 * KiB },
    // Fewer than 32 bytes between minBytes and avgBytes: the hash state rebuilt at avgBytes
    // must start from minBytes, not 32 bytes back.
    { minBytes: 240, avgBytes: 256, maxBytes: 1024 },
  ];
  for (const params of paramSets) {
    for (const gear of [GEAR_A, GEAR_B]) {
      assert.deepEqual([...cutPoints(data, params, gear)], referenceCuts(data, params, gear));
    }
  }
  // A run of one byte value: the hash stops changing after 32 bytes, so cuts come early or at maxBytes.
  const flat = new Uint8Array(1 * MiB).fill(7);
  assert.deepEqual([...cutPoints(flat, SMALL, GEAR_A)], referenceCuts(flat, SMALL, GEAR_A));
});

test("an input no longer than minBytes is one chunk, and an empty one has none", () => {
  const data = seededBytes(SMALL.minBytes, 2);
  assert.deepEqual([...cutPoints(data, SMALL, GEAR_A)], [SMALL.minBytes]);
  assert.deepEqual([...cutPoints(data.subarray(0, 1), SMALL, GEAR_A)], [1]);
  assert.deepEqual([...cutPoints(new Uint8Array(0), SMALL, GEAR_A)], []);
  assert.equal(nextCut(data, 0, data.length, false, SMALL, GEAR_A), -1);
});

test("the same key gives the same gear table and boundaries, another key different ones", () => {
  const data = seededBytes(2 * MiB, 3);
  assert.deepEqual(gearTable(new Uint8Array(32).fill(0xa1)), GEAR_A);
  assert.notDeepEqual(GEAR_A, GEAR_B);
  const cutsA = [...cutPoints(data, SMALL, GEAR_A)];
  assert.deepEqual([...cutPoints(data, SMALL, gearTable(KEY_A))], cutsA);
  const cutsB = new Set(cutPoints(data, SMALL, GEAR_B));
  const shared = cutsA.filter((c) => cutsB.has(c)).length;
  assert.ok(shared < cutsA.length / 10, `${shared} of ${cutsA.length} boundaries shared across keys`);
});

test("the gear table and the boundaries stay what they were when repositories were written", () => {
  // Pinned: a change here makes existing repositories stop deduplicating against new backups.
  const table = Buffer.from(gearTable(new Uint8Array(32)).buffer);
  assert.equal(sha256(table).slice(0, 16), "0ac622e8d3375ce9");
  const data = seededBytes(256 * KiB, 4);
  assert.deepEqual(
    [...cutPoints(data, SMALL, GEAR_A)].slice(0, 6),
    [12433, 21325, 34148, 37719, 48508, 57227],
  );
});

test("a streaming caller fed random read sizes gets exactly the whole-buffer cuts", () => {
  const cases: [ChunkerParams, Uint8Array, number][] = [
    [SMALL, seededBytes(3 * MiB, 5), 48 * KiB],
    [DEFAULT_CHUNKER_PARAMS, RANDOM.subarray(0, 24 * MiB), 5 * MiB],
  ];
  for (const [params, data, maxReadBytes] of cases) {
    const whole = [...cutPoints(data, params, GEAR_A)];
    for (const seed of [1, 2]) {
      // Log-uniform sizes from 1 byte to maxReadBytes: many tiny reads and some large ones.
      const random = prng(seed);
      const readSize = () => Math.max(1, Math.floor(Math.exp(random() * Math.log(maxReadBytes))));
      assert.deepEqual(streamCuts(data, params, maxReadBytes, readSize), whole);
    }
  }
});

test("an insertion of 100 bytes at offset 10, or its deletion, leaves at least 90% of the chunks unchanged", () => {
  const inserted = new Uint8Array(RANDOM.length + 100);
  inserted.set(RANDOM.subarray(0, 10));
  inserted.set(seededBytes(100, 7), 10);
  inserted.set(RANDOM.subarray(10), 110);
  const chunkHashes = (data: Uint8Array) =>
    chunksOf(data, [...cutPoints(data, DEFAULT_CHUNKER_PARAMS, GEAR_A)]).map(sha256);
  const original = chunkHashes(RANDOM);
  const edited = chunkHashes(inserted);
  // The deletion is the same edit read backwards: from `inserted` to `RANDOM`.
  for (const [before, after] of [
    [original, edited],
    [edited, original],
  ] as const) {
    const kept = new Set(before);
    const unchanged = after.filter((h) => kept.has(h)).length;
    assert.ok(unchanged >= 0.9 * after.length, `${unchanged} of ${after.length} chunks unchanged`);
  }
});

test("the mean chunk size on random data is within 25% of avgBytes", () => {
  // NC-2 with minBytes = avgBytes / 4 gives a mean near 1.14 avgBytes: few cuts come before avgBytes.
  for (const [params, data] of [
    [SMALL, RANDOM.subarray(0, 8 * MiB)],
    [DEFAULT_CHUNKER_PARAMS, RANDOM],
  ] as const) {
    const meanBytes = data.length / [...cutPoints(data, params, GEAR_A)].length;
    assert.ok(
      Math.abs(meanBytes - params.avgBytes) <= 0.25 * params.avgBytes,
      `mean ${meanBytes} B against avgBytes ${params.avgBytes}`,
    );
  }
});

test("bad parameters, gear tables, keys and offsets throw RangeError", () => {
  const data = seededBytes(64 * KiB, 9);
  const bad: ChunkerParams[] = [
    { ...SMALL, avgBytes: 12 * KiB },
    { ...SMALL, minBytes: 8 * KiB },
    { ...SMALL, minBytes: 16 * KiB },
    { ...SMALL, maxBytes: 8 * KiB },
    { ...SMALL, minBytes: 32 },
    { ...SMALL, minBytes: 2048.5 },
    { ...SMALL, avgBytes: Number.NaN },
    { minBytes: 64 * MiB, avgBytes: 512 * MiB, maxBytes: 1024 * MiB },
    { ...SMALL, maxBytes: 2048 * MiB },
  ];
  for (const params of bad)
    assert.throws(() => nextCut(data, 0, data.length, true, params, GEAR_A), RangeError);
  assert.throws(() => nextCut(data, 0, data.length, true, SMALL, new Uint32Array(255)), RangeError);
  for (const [start, end] of [
    [-1, 10],
    [10, 10],
    [0, data.length + 1],
    [0.5, 10],
  ] as const) {
    assert.throws(() => nextCut(data, start, end, true, SMALL, GEAR_A), RangeError);
  }
  assert.throws(() => gearTable(new Uint8Array(16)), RangeError);
  assert.throws(() => [...cutPoints(data, { ...SMALL, avgBytes: 0 }, GEAR_A)], RangeError);
});
