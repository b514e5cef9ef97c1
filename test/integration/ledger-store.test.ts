// Goal: prove the ledger keeps every committed block readable through segment sealing, torn tails, torn or lost indexes and truncation, and never edits a sealed segment in place; method: append real valid blocks to a LedgerStore in a temp directory with 4 KiB segments, damage its files as a crash would, reopen it and compare every block, index entry and file byte with what was written.
import assert from "node:assert/strict";
import {
  appendFileSync,
  closeSync,
  linkSync,
  openSync,
  readFileSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { sha256 } from "../../src/chain/crypto.js";
import type { ImportedBlock } from "../../src/chain/storage/chain-store.js";
import type { LedgerItem } from "../../src/chain/storage/ledger-store.js";
import { LedgerError, LedgerErrorCode, LedgerStore } from "../../src/chain/storage/ledger-store.js";
import {
  encodeRecord,
  INDEX_ENTRY_BYTES,
  INDEX_HEADER_BYTES,
  RECORD_BLOCK,
  segmentFileName,
} from "../../src/chain/storage/segment-format.js";
import { readSegments } from "../../src/chain/storage/segment-reader.js";
import { silentLogger } from "../../src/util/logger.js";
import {
  buildBlocks,
  genesisBase,
  ledgerItem,
  makeChainFixture,
  resealBlock,
  tempDir,
  weightOf,
} from "./_chain-fixture.js";

// 4 KiB segments: a block of 3 transfers is ~700 bytes, so a segment seals every ~6 blocks.
const SEGMENT_BYTES = 4096;
const fx = makeChainFixture();
// 30 blocks, built once: 5 or more segments, the last one active.
const CHAIN = buildBlocks(fx, genesisBase(fx), 30);
// A second branch from genesis, for appends after a truncation that must differ from what was cut.
const OTHER = buildBlocks(fx, genesisBase(fx), 30, { amountSalt: 7n });

/** A block of the other branch re-signed at `height`, for appends that must differ from what was cut. */
function otherAt(height: number, i = 0): LedgerItem {
  return ledgerItem(resealBlock(fx, OTHER[i]!.block, { height }));
}

function openLedger(dir: string): LedgerStore {
  return LedgerStore.open({ dir, segmentBytes: SEGMENT_BYTES, weightOf }, silentLogger());
}

/** Appends blocks in uneven batches, as a node importing from peers would. */
function appendAll(ledger: LedgerStore, blocks: ImportedBlock[]): void {
  for (let i = 0; i < blocks.length; ) {
    const n = 1 + (i % 4);
    ledger.append(blocks.slice(i, i + n).map(ledgerItem));
    i += n;
  }
}

/**
 * Asserts the ledger holds `blocks` from height 1, bytes, hashes and cumulative weights, and
 * that its tip is at `tipHeight` (the last of `blocks` unless given).
 */
function assertHolds(ledger: LedgerStore, blocks: ImportedBlock[], tipHeight = blocks.length): void {
  assert.equal(ledger.tipHeight, tipHeight);
  let weight = 0n;
  for (const ib of blocks) {
    const h = ib.block.header.height;
    weight += ledgerItem(ib).weight;
    assert.deepEqual(ledger.readBlockBytes(h), ib.bytes, `bytes of block ${h}`);
    const e = ledger.entry(h);
    assert.ok(e, `index entry ${h}`);
    assert.deepEqual(e.hash, ib.hash, `hash of block ${h}`);
    assert.equal(e.weight, weight, `cumulative weight at ${h}`);
    assert.equal(e.timestampMs, ib.block.header.timestampMs, `timestamp of block ${h}`);
  }
  assert.equal(ledger.entry(tipHeight + 1), undefined);
}

/** The heights of the block records on disk, in file order, and any fault found. */
function diskHeights(dir: string): number[] {
  const heights: number[] = [];
  for (const e of readSegments(dir)) {
    assert.notEqual(e.kind, "fault", `segment fault: ${e.kind === "fault" ? e.reason : ""}`);
    if (e.kind === "block") heights.push(e.height);
  }
  return heights;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** The record offset of a block on disk. */
function recordAt(dir: string, height: number): { file: string; offset: number } {
  for (const e of readSegments(dir)) {
    if (e.kind === "block" && e.height === height) return { file: e.file, offset: e.offset };
  }
  throw new Error(`Block ${height} is not on disk`);
}

test("appended blocks read back byte for byte across sealed segments, before and after reopening", (t) => {
  const dir = tempDir(t, "ledger");
  let ledger = openLedger(dir);
  appendAll(ledger, CHAIN);
  assertHolds(ledger, CHAIN);
  const segs = ledger.segments();
  assert.ok(segs.length >= 4, `expected at least 4 segments, got ${segs.length}`);
  ledger.close();

  ledger = openLedger(dir);
  assertHolds(ledger, CHAIN);
  assert.deepEqual(ledger.segments(), segs);
  ledger.close();
  assert.deepEqual(diskHeights(dir), range(1, CHAIN.length));
});

/** Splits a peer's block range response into its blocks. */
function unframe(frames: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < frames.length; ) {
    const n = frames.readUInt32BE(off);
    out.push(frames.subarray(off + 4, off + 4 + n));
    off += 4 + n;
  }
  return out;
}

test("readBlockFrames serves ranges across segments byte for byte, within its byte bound, and refuses a damaged record", (t) => {
  const dir = tempDir(t, "ledger");
  const ledger = openLedger(dir);
  appendAll(ledger, CHAIN);
  t.after(() => ledger.close());
  // Every range, tip included, spans several 4 KiB segments.
  for (const [from, to] of [
    [1, 30],
    [5, 17],
    [29, 30],
    [30, 99],
  ] as const) {
    const got = unframe(ledger.readBlockFrames(from, to, 1 << 20));
    assert.deepEqual(
      got,
      CHAIN.slice(from - 1, Math.min(to, 30)).map((b) => b.bytes),
      `blocks ${from}-${to}`,
    );
  }
  // The byte bound: as many whole blocks as fit, but never none.
  const three = CHAIN.slice(0, 3).reduce((s, b) => s + 4 + b.bytes.length, 0);
  assert.equal(unframe(ledger.readBlockFrames(1, 30, three)).length, 3);
  assert.equal(unframe(ledger.readBlockFrames(1, 30, three - 1)).length, 2);
  assert.equal(unframe(ledger.readBlockFrames(1, 30, 1)).length, 1);
  assert.equal(ledger.readBlockFrames(31, 40, 1 << 20).length, 0);
  // A flipped byte inside block 12's record: a range over it names the block and the file.
  const at = recordAt(dir, 12);
  const fd = openSync(at.file, "r+");
  const b = Buffer.alloc(1);
  readFileSync(at.file).copy(b, 0, at.offset + 40, at.offset + 41);
  b[0] = b[0]! ^ 0x10;
  writeSync(fd, b, 0, 1, at.offset + 40);
  closeSync(fd);
  assert.throws(
    () => ledger.readBlockFrames(10, 14, 1 << 20),
    (err: unknown) =>
      err instanceof LedgerError && err.code === LedgerErrorCode.Corrupt && /block 12/.test(err.message),
  );
});

test("a ledger whose last segment is sealed reopens and appends into a new segment", (t) => {
  const dir = tempDir(t, "ledger");
  // 14 blocks: the second segment fills and seals with block 14, leaving no active segment.
  const blocks = CHAIN.slice(0, 14);
  let ledger = openLedger(dir);
  appendAll(ledger, blocks);
  assert.deepEqual(
    ledger.segments().map((s) => [s.segment, s.sealed]),
    [
      [0, true],
      [1, true],
    ],
  );
  ledger.close();

  ledger = openLedger(dir);
  assertHolds(ledger, blocks);
  assert.equal(ledger.segments().at(-1)?.sealed, true);
  ledger.append([ledgerItem(CHAIN[14]!)]);
  assert.deepEqual(
    ledger.segments().map((s) => [s.segment, s.sealed]),
    [
      [0, true],
      [1, true],
      [2, false],
    ],
  );
  ledger.close();

  ledger = openLedger(dir);
  assertHolds(ledger, CHAIN.slice(0, 15));
  ledger.close();
  assert.deepEqual(diskHeights(dir), range(1, 15));
});

test("segments() reports every segment but the last as sealed, and each sealed file ends with a seal record over its bytes", (t) => {
  const dir = tempDir(t, "ledger");
  const ledger = openLedger(dir);
  appendAll(ledger, CHAIN);
  const segs = ledger.segments();
  ledger.close();
  assert.deepEqual(
    segs.map((s) => s.segment),
    range(0, segs.length - 1),
  );
  assert.deepEqual(
    segs.map((s) => s.sealed),
    [...segs.slice(1).map(() => true), false],
  );

  const entries = [...readSegments(dir)];
  for (const s of segs) {
    assert.equal(s.sizeBytes, statSync(s.path).size, `size of ${s.path}`);
    const inFile = entries.filter((e) => e.file === s.path);
    const last = inFile[inFile.length - 1];
    assert.ok(last, `records in ${s.path}`);
    if (!s.sealed) {
      assert.equal(last.kind, "block", `the active segment ${s.path} ends with a block`);
      continue;
    }
    assert.equal(last.kind, "seal", `sealed segment ${s.path} ends with a seal record`);
    if (last.kind !== "seal") continue;
    const blocks = inFile.filter((e) => e.kind === "block");
    assert.equal(last.blockCount, blocks.length, `seal block count of ${s.path}`);
    assert.equal(last.height, blocks[blocks.length - 1]?.height, `seal height of ${s.path}`);
    const bytes = readFileSync(s.path);
    assert.deepEqual(last.digest, sha256(bytes.subarray(0, last.offset)), `seal digest of ${s.path}`);
  }
});

const TORN_TAILS: { name: string; tail: () => Buffer }[] = [
  {
    name: "the first 20 bytes of the next block's record",
    tail: () => encodeRecord(RECORD_BLOCK, CHAIN.length + 1, OTHER[0]!.bytes).subarray(0, 20),
  },
  {
    name: "a whole record header whose body never arrived",
    tail: () => {
      const rec = encodeRecord(RECORD_BLOCK, CHAIN.length + 1, OTHER[0]!.bytes);
      return rec.subarray(0, rec.length - 1);
    },
  },
  { name: "zeroed bytes", tail: () => Buffer.alloc(300) },
  { name: "random garbage", tail: () => Buffer.from(sha256(Buffer.from("garbage")).toString("hex")) },
];

for (const { name, tail } of TORN_TAILS) {
  test(`reopening cuts a torn tail of ${name} back to the last whole record and appends after it`, (t) => {
    const dir = tempDir(t, "ledger");
    const blocks = CHAIN.slice(0, 20);
    let ledger = openLedger(dir);
    appendAll(ledger, blocks);
    const last = ledger.segments().at(-1)!;
    assert.equal(last.sealed, false, "the damaged segment must be the active one");
    ledger.close();
    const before = readFileSync(last.path);
    appendFileSync(last.path, tail());

    ledger = openLedger(dir);
    assertHolds(ledger, blocks);
    assert.deepEqual(readFileSync(last.path), before, "the file is cut back to the last whole record");
    ledger.append([ledgerItem(CHAIN[20]!)]);
    assertHolds(ledger, CHAIN.slice(0, 21));
    ledger.close();

    ledger = openLedger(dir);
    assertHolds(ledger, CHAIN.slice(0, 21));
    ledger.close();
    assert.deepEqual(diskHeights(dir), range(1, 21));
  });
}

const INDEX_DAMAGE: { name: string; damage: (idxPath: string, count: number) => void }[] = [
  {
    name: "cut 20 bytes into its last entry",
    damage: (p) => truncateSync(p, statSync(p).size - 20),
  },
  {
    name: "cut by three and a half entries",
    damage: (p) => truncateSync(p, statSync(p).size - 3 * INDEX_ENTRY_BYTES - INDEX_ENTRY_BYTES / 2),
  },
  {
    name: "its last entry zeroed",
    damage: (p, count) => {
      const fd = openSync(p, "r+");
      writeSync(
        fd,
        Buffer.alloc(INDEX_ENTRY_BYTES),
        0,
        INDEX_ENTRY_BYTES,
        INDEX_HEADER_BYTES + (count - 1) * 64,
      );
      closeSync(fd);
    },
  },
  {
    // A batch of entries spans several pages; after a crash any subset of them may be on disk.
    name: "an entry below the last zeroed, as a torn multi-page write leaves it",
    damage: (p, count) => {
      const fd = openSync(p, "r+");
      writeSync(
        fd,
        Buffer.alloc(INDEX_ENTRY_BYTES),
        0,
        INDEX_ENTRY_BYTES,
        INDEX_HEADER_BYTES + (count - 4) * 64,
      );
      closeSync(fd);
    },
  },
  {
    name: "its header only, every entry lost",
    damage: (p) => truncateSync(p, INDEX_HEADER_BYTES),
  },
  { name: "the file deleted", damage: (p) => unlinkSync(p) },
];

for (const { name, damage } of INDEX_DAMAGE) {
  test(`reopening re-derives an index with ${name}, identical to the one written`, (t) => {
    const dir = tempDir(t, "ledger");
    let ledger = openLedger(dir);
    appendAll(ledger, CHAIN);
    ledger.close();
    const idxPath = join(dir, "heights.idx");
    const original = readFileSync(idxPath);
    damage(idxPath, CHAIN.length);

    ledger = openLedger(dir);
    assertHolds(ledger, CHAIN);
    ledger.append([otherAt(CHAIN.length + 1)]);
    ledger.close();
    assert.deepEqual(
      readFileSync(idxPath).subarray(0, original.length),
      original,
      "the re-derived index equals the one the appends wrote",
    );
  });
}

test("truncate within the active segment drops the blocks above, keeps those below, and appends continue at the next height", (t) => {
  const dir = tempDir(t, "ledger");
  // 26 blocks: the active segment holds the last five, so the cut falls inside it.
  const blocks = CHAIN.slice(0, 26);
  let ledger = openLedger(dir);
  appendAll(ledger, blocks);
  const segsBefore = ledger.segments();
  const activePath = segsBefore.at(-1)!.path;
  const target = blocks.length - 2;
  assert.equal(recordAt(dir, target).file, activePath, "the kept tip must be in the active segment");
  assert.equal(recordAt(dir, target + 1).file, activePath, "the cut must fall in the active segment");

  ledger.truncate(target);
  assertHolds(ledger, CHAIN.slice(0, target));
  assert.throws(
    () => ledger.readBlockBytes(target + 1),
    (err: unknown) => err instanceof LedgerError && err.code === LedgerErrorCode.NotFound,
  );
  assert.deepEqual(
    ledger.segments().map((s) => s.path),
    segsBefore.map((s) => s.path),
  );
  const replacement = otherAt(target + 1);
  ledger.append([replacement]);
  assert.deepEqual(ledger.readBlockBytes(target + 1), replacement.bytes);
  ledger.close();

  ledger = openLedger(dir);
  assertHolds(ledger, CHAIN.slice(0, target), target + 1);
  assert.deepEqual(ledger.readBlockBytes(target + 1), replacement.bytes);
  assert.deepEqual(ledger.entry(target + 1)?.hash, replacement.hash);
  ledger.close();
  assert.deepEqual(diskHeights(dir), range(1, target + 1));
});

test("truncate into a sealed segment writes a new file and leaves a hard link to the old one byte-for-byte intact", (t) => {
  const dir = tempDir(t, "ledger");
  const links = tempDir(t, "links");
  let ledger = openLedger(dir);
  appendAll(ledger, CHAIN);
  const segsBefore = ledger.segments();
  const sealed = segsBefore[1]!;
  assert.ok(sealed.sealed);
  const blocksIn = [...readSegments(dir)].filter((e) => e.kind === "block" && e.file === sealed.path);
  assert.ok(blocksIn.length >= 3, "the sealed segment must hold a block above and below the cut");
  const target = blocksIn[1]!.kind === "block" ? blocksIn[1]!.height : 0;
  const linkPath = join(links, "sealed.dat");
  linkSync(sealed.path, linkPath);
  const original = readFileSync(sealed.path);

  ledger.truncate(target);
  assert.deepEqual(readFileSync(linkPath), original, "the hard link keeps the sealed content");
  assert.notEqual(statSync(sealed.path).ino, statSync(linkPath).ino, "the store wrote a new inode");
  assertHolds(ledger, CHAIN.slice(0, target));
  const segs = ledger.segments();
  assert.deepEqual(
    segs.map((s) => [s.segment, s.sealed]),
    [
      [0, true],
      [1, false],
    ],
  );
  for (const s of segsBefore.slice(2)) assert.throws(() => statSync(s.path), /ENOENT/);

  // Appends continue at target + 1 and seal the rewritten segment again when it fills.
  const next = Array.from({ length: 10 }, (_, i) => otherAt(target + 1 + i, i));
  ledger.append(next);
  assert.equal(ledger.tipHeight, target + 10);
  assert.deepEqual(readFileSync(linkPath), original, "appending after the cut leaves the link intact");
  ledger.close();

  ledger = openLedger(dir);
  assertHolds(ledger, CHAIN.slice(0, target), target + 10);
  for (const it of next) assert.deepEqual(ledger.readBlockBytes(it.height), it.bytes);
  ledger.close();
  assert.deepEqual(diskHeights(dir), range(1, target + 10));
});

test("truncate to the last block of a sealed segment keeps that segment sealed and appends into a new one", (t) => {
  const dir = tempDir(t, "ledger");
  let ledger = openLedger(dir);
  appendAll(ledger, CHAIN);
  const seal = [...readSegments(dir)].find((e) => e.kind === "seal");
  assert.ok(seal && seal.kind === "seal");
  const original = readFileSync(seal.file);

  ledger.truncate(seal.height);
  assertHolds(ledger, CHAIN.slice(0, seal.height));
  assert.deepEqual(
    ledger.segments().map((s) => [s.segment, s.sealed]),
    [[0, true]],
  );
  const replacement = otherAt(seal.height + 1);
  ledger.append([replacement]);
  assert.deepEqual(
    ledger.segments().map((s) => [s.segment, s.sealed]),
    [
      [0, true],
      [1, false],
    ],
  );
  ledger.close();
  assert.deepEqual(readFileSync(seal.file), original);

  ledger = openLedger(dir);
  assert.equal(ledger.tipHeight, seal.height + 1);
  assert.deepEqual(ledger.readBlockBytes(seal.height + 1), replacement.bytes);
  ledger.close();
});

test("truncate(0) empties the ledger and appends start again at height 1 in segment 0", (t) => {
  const dir = tempDir(t, "ledger");
  let ledger = openLedger(dir);
  appendAll(ledger, CHAIN.slice(0, 10));
  ledger.truncate(0);
  assert.equal(ledger.tipHeight, 0);
  assert.equal(ledger.tip, undefined);
  assert.deepEqual(ledger.segments(), []);
  ledger.append([ledgerItem(OTHER[0]!)]);
  assert.deepEqual(
    ledger.segments().map((s) => [s.segment, s.sealed]),
    [[0, false]],
  );
  ledger.close();

  ledger = openLedger(dir);
  assertHolds(ledger, OTHER.slice(0, 1));
  ledger.close();
  assert.deepEqual(diskHeights(dir), [1]);
});

test("open refuses a ledger whose middle segment is missing, naming the file", (t) => {
  const dir = tempDir(t, "ledger");
  const ledger = openLedger(dir);
  appendAll(ledger, CHAIN);
  assert.ok(ledger.segments().length >= 3);
  ledger.close();
  unlinkSync(join(dir, segmentFileName(1)));
  assert.throws(
    () => openLedger(dir),
    (err: unknown) => {
      assert.ok(err instanceof LedgerError, `expected a LedgerError, got ${String(err)}`);
      assert.equal(err.code, LedgerErrorCode.MissingSegment);
      assert.match(err.message, new RegExp(segmentFileName(1).replace(".", "\\.")));
      return true;
    },
  );
});

test("open refuses a ledger whose first segment is missing, naming that file", (t) => {
  const dir = tempDir(t, "ledger");
  const ledger = openLedger(dir);
  appendAll(ledger, CHAIN);
  ledger.close();
  unlinkSync(join(dir, segmentFileName(0)));
  assert.throws(
    () => openLedger(dir),
    (err: unknown) => {
      assert.ok(err instanceof LedgerError, `expected a LedgerError, got ${String(err)}`);
      assert.equal(err.code, LedgerErrorCode.MissingSegment);
      assert.match(err.message, new RegExp(segmentFileName(0).replace(".", "\\.")));
      return true;
    },
  );
});
