// Goal: prove offline validation accepts a sound data directory and names the exact height, code, file and offset of a damaged or invalid block; method: write a real chain with a ChainStore in a temp directory, flip bytes or rewrite records in its segment files (with and without a correct checksum), and run validateNodeData on it.
import assert from "node:assert/strict";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { decodeBlock, encodeBlock } from "../../src/chain/block.js";
import { hex } from "../../src/chain/crypto.js";
import { ChainStore, type ImportedBlock } from "../../src/chain/storage/chain-store.js";
import {
  encodeRecord,
  RECORD_BLOCK,
  RECORD_BODY_PREFIX_BYTES,
  RECORD_HEADER_BYTES,
} from "../../src/chain/storage/segment-format.js";
import { readSegments } from "../../src/chain/storage/segment-reader.js";
import { signTransfer } from "../../src/chain/tx.js";
import type { Block, Transaction } from "../../src/chain/types.js";
import { validateNodeData } from "../../src/ledger/validate.js";
import { silentLogger } from "../../src/util/logger.js";
import {
  buildBlocks,
  hashTree,
  makeChainFixture,
  resealBlock,
  storeBase,
  tempDir,
} from "./_chain-fixture.js";

// 4 KiB segments: ~7 blocks each, so the 20-block chain has sealed segments and an active one.
const SEGMENT_BYTES = 4096;
const BLOCKS = 20;
const fx = makeChainFixture();

function openStore(dataDir: string): ChainStore {
  return ChainStore.open(fx.genesis, { dataDir, segmentBytes: SEGMENT_BYTES, undoDepth: 0 }, silentLogger());
}

/** Writes a 20-block chain into a fresh data directory and closes it. */
async function writeChain(t: TestContext): Promise<{ dir: string; chain: ImportedBlock[] }> {
  const dir = tempDir(t, "validate");
  const store = openStore(dir);
  const chain = buildBlocks(fx, storeBase(store), BLOCKS);
  assert.equal(await store.importBlocks(chain), BLOCKS);
  await store.close();
  return { dir, chain };
}

/** Where the record of a block lies on disk. */
function recordOf(dir: string, height: number): { file: string; offset: number; payload: Buffer } {
  for (const e of readSegments(join(dir, "ledger"))) {
    if (e.kind === "block" && e.height === height) {
      return { file: e.file, offset: e.offset, payload: Buffer.from(e.payload) };
    }
  }
  throw new Error(`Block ${height} is not on disk`);
}

function writeAt(file: string, offset: number, bytes: Buffer): void {
  const fd = openSync(file, "r+");
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** Rewrites the record of a block in place with a new payload of the same size and a correct checksum. */
function rewriteRecord(dir: string, height: number, payload: Buffer): { file: string; offset: number } {
  const rec = recordOf(dir, height);
  assert.equal(payload.length, rec.payload.length, "the new payload must fit the old record");
  writeAt(rec.file, rec.offset, encodeRecord(RECORD_BLOCK, height, payload));
  return rec;
}

/** A block with its first transfer's amount raised by 1; the transfer is re-signed if `resign`. */
function raiseFirstAmount(block: Block, resign: boolean): Transaction[] {
  return block.txs.map((tx, i) => {
    if (i !== 0) return tx;
    if (!resign) return { ...tx, amount: tx.amount + 1n };
    const key = fx.accounts.find((a) => a.publicKey.equals(tx.from));
    assert.ok(key, "the sender is a fixture account");
    return signTransfer(fx.genesis.hash, key, tx.to, tx.amount + 1n, tx.nonce);
  });
}

test("a sound data directory validates to its tip, with the state database matching", async (t) => {
  const { dir, chain } = await writeChain(t);
  const tip = chain[BLOCKS - 1]!;
  const report = await validateNodeData(dir, fx.genesis);
  assert.equal(report.ok, true, report.fault?.message);
  assert.equal(report.fault, undefined);
  assert.equal(report.validHeight, BLOCKS);
  assert.equal(report.validHash, hex(tip.hash));
  assert.equal(report.stateRoot, hex(tip.block.header.stateRoot));
  assert.equal(report.stateDbMatches, true);
  assert.equal(report.blocks, BLOCKS);
  assert.equal(report.txs, BLOCKS * 3);
  // Every block is in turn: weight 2 each.
  assert.equal(report.weight, String(2 * BLOCKS));
});

// Heights 3, 12 and 20: in the first sealed segment, a middle sealed one and the active one.
for (const height of [3, 12, BLOCKS]) {
  test(`a flipped byte in block ${height}'s record payload is a LEDGER_CORRUPT fault at that height, file and offset`, async (t) => {
    const { dir, chain } = await writeChain(t);
    const rec = recordOf(dir, height);
    // Byte 100 of the payload: inside the header's state root.
    const at = rec.offset + RECORD_HEADER_BYTES + RECORD_BODY_PREFIX_BYTES + 100;
    const original = readFileSync(rec.file).subarray(at, at + 1);
    writeAt(rec.file, at, Buffer.from([original[0]! ^ 0x10]));

    const report = await validateNodeData(dir, fx.genesis);
    assert.equal(report.ok, false);
    assert.ok(report.fault, "a fault is reported");
    assert.equal(report.fault.height, height);
    assert.equal(report.fault.code, "LEDGER_CORRUPT");
    assert.equal(report.fault.file, rec.file);
    assert.equal(report.fault.offset, rec.offset);
    assert.match(report.fault.message, /checksum/);
    assert.equal(report.validHeight, height - 1);
    assert.equal(report.validHash, hex(height > 1 ? chain[height - 2]!.hash : fx.genesis.hash));
    assert.equal(report.stateRoot, hex(chain[height - 2]!.block.header.stateRoot));
  });
}

test("a record with a valid checksum but a changed transfer amount is a BLOCK_* fault at that height", async (t) => {
  const { dir, chain } = await writeChain(t);
  const height = 12;
  const block = decodeBlock(recordOf(dir, height).payload);
  const spoiled = encodeBlock({ header: block.header, txs: raiseFirstAmount(block, false) });
  const rec = rewriteRecord(dir, height, spoiled);

  const report = await validateNodeData(dir, fx.genesis);
  assert.equal(report.ok, false);
  assert.ok(report.fault, "a fault is reported");
  assert.equal(report.fault.height, height);
  assert.match(report.fault.code, /^BLOCK_/);
  assert.equal(report.fault.file, rec.file);
  assert.equal(report.fault.offset, rec.offset);
  assert.equal(report.validHeight, height - 1);
  assert.equal(report.validHash, hex(chain[height - 2]!.hash));
  assert.equal(report.stateDbMatches, null, "the state database is not compared with a broken ledger");
});

test("a block its proposer re-signed over a re-signed, changed transfer fails the state-root check at that height", async (t) => {
  const { dir, chain } = await writeChain(t);
  const height = 12;
  const block = decodeBlock(recordOf(dir, height).payload);
  // Signatures, transaction root and parent all verify: only replaying the transfers can tell.
  const spoiled = resealBlock(fx, block, {}, raiseFirstAmount(block, true));
  rewriteRecord(dir, height, spoiled.bytes);

  const report = await validateNodeData(dir, fx.genesis);
  assert.equal(report.ok, false);
  assert.equal(report.fault?.height, height);
  assert.equal(report.fault?.code, "BLOCK_BAD_STATE_ROOT");
  assert.equal(report.validHeight, height - 1);
  assert.equal(report.validHash, hex(chain[height - 2]!.hash));
});

test("validation leaves every file of a checkpoint byte-identical", async (t) => {
  const dir = tempDir(t, "validate");
  const store = openStore(dir);
  assert.equal(await store.importBlocks(buildBlocks(fx, storeBase(store), BLOCKS)), BLOCKS);
  const cp = await store.checkpoint();
  await store.close();
  const before = hashTree(cp.dir);

  const report = await validateNodeData(cp.dir, fx.genesis);
  assert.equal(report.ok, true, report.fault?.message);
  assert.deepEqual(hashTree(cp.dir), before);
});
