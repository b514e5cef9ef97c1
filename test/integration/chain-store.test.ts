// Goal: prove the chain store keeps ledger and state in step through imports of valid and invalid blocks, crashes on either side, reorganisations, rollbacks and checkpoints; method: build real signed blocks with the shared fixture, drive a ChainStore in a temp directory, damage its files as a crash would, and check tips, state roots and every balance against an independent model of the transfers.
import assert from "node:assert/strict";
import { existsSync, statSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { hex, sha256 } from "../../src/chain/crypto.js";
import {
  ChainStore,
  ChainStoreError,
  ChainStoreErrorCode,
  type ImportedBlock,
  prepareBlock,
} from "../../src/chain/storage/chain-store.js";
import { LedgerStore } from "../../src/chain/storage/ledger-store.js";
import { reorgJournalPath } from "../../src/chain/storage/reorg-journal.js";
import { INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES } from "../../src/chain/storage/segment-format.js";
import { readSegments } from "../../src/chain/storage/segment-reader.js";
import { BlockError, BlockErrorCode } from "../../src/chain/validate.js";
import { validateNodeData } from "../../src/ledger/validate.js";
import { silentLogger } from "../../src/util/logger.js";
import {
  buildBlocks,
  expectedAccounts,
  hashTree,
  ledgerItem,
  makeChainFixture,
  outOfTurn,
  resealBlock,
  storeBase,
  tempDir,
  weightOf,
} from "./_chain-fixture.js";

// 4 KiB segments: a block of 3 transfers is ~630 bytes, so a segment seals every 7 blocks.
const SMALL_SEGMENT_BYTES = 4096;
// 1 MiB: every block of a test stays in one active segment.
const LARGE_SEGMENT_BYTES = 1 << 20;
const fx = makeChainFixture();

function openStore(dataDir: string, segmentBytes = SMALL_SEGMENT_BYTES): ChainStore {
  return ChainStore.open(fx.genesis, { dataDir, segmentBytes, undoDepth: 0 }, silentLogger());
}

/** A new store in a fresh temp directory. */
function newStore(t: TestContext, segmentBytes = SMALL_SEGMENT_BYTES): { dir: string; store: ChainStore } {
  const dir = tempDir(t, "chain");
  return { dir, store: openStore(dir, segmentBytes) };
}

/** Builds `count` valid blocks on the store's tip and imports them. */
async function grow(store: ChainStore, count: number, opts: Parameters<typeof buildBlocks>[3] = {}) {
  const blocks = buildBlocks(fx, storeBase(store), count, opts);
  assert.equal(await store.importBlocks(blocks), count);
  return blocks;
}

/** Asserts the store's tip is the last of `chain` and every account matches the model of `chain`. */
function assertChainIs(store: ChainStore, chain: ImportedBlock[]): void {
  const last = chain[chain.length - 1]!;
  const tip = store.tip();
  assert.equal(tip.height, chain.length, "tip height");
  assert.equal(hex(tip.hash), hex(last.hash), "tip hash");
  assert.equal(hex(store.stateRoot), hex(last.block.header.stateRoot), "state root");
  let weight = 0n;
  for (const ib of chain) weight += ledgerItem(ib).weight;
  assert.equal(tip.weight, weight, "tip weight");
  for (const [key, want] of expectedAccounts(fx, chain)) {
    assert.deepEqual(store.state.getAccount(Buffer.from(key, "hex")), want, `account ${key.slice(0, 8)}`);
  }
  for (const ib of chain) {
    assert.equal(
      hex(store.hashAt(ib.block.header.height)!),
      hex(ib.hash),
      `hash at ${ib.block.header.height}`,
    );
  }
  assertLedgerAndStateAgree(store);
}

/** Asserts the state applied exactly the ledger's blocks and its commitment matches its accounts. */
function assertLedgerAndStateAgree(store: ChainStore): void {
  const tipHeight = store.ledger.tipHeight;
  assert.equal(store.state.head?.height ?? 0, tipHeight, "state head height equals the ledger tip");
  for (let h = 1; h <= tipHeight; h++) {
    const applied = store.state.appliedAt(h);
    const entry = store.ledger.entry(h);
    assert.ok(applied && entry, `state and ledger both hold height ${h}`);
    assert.equal(hex(applied.hash), hex(entry.hash), `hash at ${h}`);
    assert.equal(applied.weight, entry.weight, `weight at ${h}`);
  }
  assert.equal(store.state.appliedAt(tipHeight + 1), undefined, "no state above the ledger tip");
  assert.equal(
    hex(store.state.recomputeLtHash().root()),
    hex(store.stateRoot),
    "commitment matches accounts",
  );
}

/** The heights of the block records on disk under a data directory. */
function diskHeights(dataDir: string): number[] {
  const heights: number[] = [];
  for (const e of readSegments(join(dataDir, "ledger"))) {
    assert.notEqual(e.kind, "fault");
    if (e.kind === "block") heights.push(e.height);
  }
  return heights;
}

function flip(b: Buffer, at: number): Buffer {
  const c = Buffer.from(b);
  c[at] = (c[at] ?? 0) ^ 0x01;
  return c;
}

test("importBlocks of valid blocks sets the tip, state root and every balance, with ledger and state agreeing", async (t) => {
  const { dir, store } = newStore(t);
  const chain = [...(await grow(store, 5)), ...(await grow(store, 12, { txsPerBlock: 5 }))];
  assertChainIs(store, chain);
  assert.ok(store.segments().length >= 2, "the chain spans sealed segments");
  await store.close();

  const reopened = openStore(dir);
  assertChainIs(reopened, chain);
  await reopened.close();
  assert.deepEqual(
    diskHeights(dir),
    chain.map((ib) => ib.block.header.height),
  );
});

const BAD_BLOCKS: { code: BlockErrorCode; spoil: (ib: ImportedBlock) => ImportedBlock }[] = [
  {
    code: BlockErrorCode.BadStateRoot,
    spoil: (ib) => resealBlock(fx, ib.block, { stateRoot: sha256(Buffer.from("not the state")) }),
  },
  {
    code: BlockErrorCode.BadTxSignature,
    // The proposer re-signs a header over the spoiled transaction, so only its signature is wrong.
    spoil: (ib) =>
      resealBlock(
        fx,
        ib.block,
        {},
        ib.block.txs.map((tx, i) => (i === 1 ? { ...tx, signature: flip(tx.signature, 10) } : tx)),
      ),
  },
  {
    code: BlockErrorCode.BadSignature,
    spoil: (ib) =>
      prepareBlock({
        header: { ...ib.block.header, signature: flip(ib.block.header.signature, 5) },
        txs: ib.block.txs,
      }),
  },
];

// A batch as decoded blocks (own or announced) and as a peer's bytes (sync), which are
// decoded one by one as the import reaches them.
const IMPORTS = {
  importBlocks: (store: ChainStore, blocks: ImportedBlock[]) => store.importBlocks(blocks),
  importEncoded: (store: ChainStore, blocks: ImportedBlock[]) =>
    store.importEncoded(blocks.map((b) => b.bytes)),
};

for (const [how, importBatch] of Object.entries(IMPORTS))
  for (const { code, spoil } of BAD_BLOCKS) {
    test(`${how} refuses a block with ${code}, keeps the valid blocks before it and leaves nothing of it or what follows`, async (t) => {
      const { dir, store } = newStore(t);
      const base = await grow(store, 3);
      const next = buildBlocks(fx, storeBase(store), 5);
      const bad = spoil(next[3]!);
      // The batch goes on past the bad block: nothing after it may be imported either.
      await assert.rejects(
        importBatch(store, [next[0]!, next[1]!, next[2]!, bad, next[4]!]),
        (err: unknown) => {
          assert.ok(err instanceof BlockError, `expected a BlockError, got ${String(err)}`);
          assert.equal(err.code, code);
          assert.equal(err.height, 7);
          return true;
        },
      );
      const kept = [...base, ...next.slice(0, 3)];
      assertChainIs(store, kept);
      assert.equal(store.state.appliedAt(7), undefined, "the state holds nothing of the bad block");
      assert.deepEqual(diskHeights(dir), [1, 2, 3, 4, 5, 6], "the ledger holds nothing of the bad block");

      // The good blocks still import: nothing of the bad one lingers.
      assert.equal(await importBatch(store, next.slice(3)), 2);
      assertChainIs(store, [...kept, ...next.slice(3)]);
      await store.close();
    });
  }

test("importEncoded of a peer's batch whose fourth block does not decode keeps the three before it and nothing after", async (t) => {
  const { dir, store } = newStore(t);
  const base = await grow(store, 3);
  const next = buildBlocks(fx, storeBase(store), 5);
  const bytes = next.map((b) => b.bytes);
  bytes[3] = bytes[3]!.subarray(0, bytes[3]!.length - 7);
  await assert.rejects(store.importEncoded(bytes), /Cannot decode block/);
  assertChainIs(store, [...base, ...next.slice(0, 3)]);
  assert.deepEqual(diskHeights(dir), [1, 2, 3, 4, 5, 6]);
  assert.equal(await store.importEncoded(next.slice(3).map((b) => b.bytes)), 2);
  assertChainIs(store, [...base, ...next]);
  await store.close();
});

test("reopening replays into the state blocks the ledger holds but the state never applied", async (t) => {
  const { dir, store } = newStore(t);
  const chain = await grow(store, 5);
  // Three more blocks reach the ledger only, as after a crash between the ledger fsync and the state commit.
  const extra = buildBlocks(fx, storeBase(store), 3);
  await store.close();
  const ledger = LedgerStore.open(
    { dir: join(dir, "ledger"), segmentBytes: SMALL_SEGMENT_BYTES, weightOf },
    silentLogger(),
  );
  ledger.append(extra.map(ledgerItem));
  ledger.close();

  const reopened = openStore(dir);
  assertChainIs(reopened, [...chain, ...extra]);
  await reopened.close();
});

test("a state commit that fails after the ledger took the blocks (a full disk) cuts the ledger back: ledger and state agree, and the blocks import again", async (t) => {
  const { store } = newStore(t);
  const chain = await grow(store, 5);
  // Enough blocks to seal a segment and start another, so the cut crosses a file.
  const more = buildBlocks(fx, storeBase(store), 9);
  const segmentsBefore = store.segments().length;
  const active = store.segments().at(-1)!;
  assert.equal(active.sealed, false);
  const inode = statSync(active.path).ino;
  process.env.CHAINVAULT_FAIL_AT = "chain.import.before-commit";
  try {
    await assert.rejects(store.importBlocks(more), /Injected failure at chain.import.before-commit/);
  } finally {
    delete process.env.CHAINVAULT_FAIL_AT;
  }
  assertChainIs(store, chain);
  assertLedgerAndStateAgree(store);
  assert.equal(store.segments().length, segmentsBefore, "the segment the append started is gone");
  // Cut back in place, not rewritten as a copy (which a full disk would refuse), and unsealed again.
  assert.equal(statSync(active.path).ino, inode);
  assert.equal(statSync(active.path).size, active.sizeBytes);
  assert.equal(store.segments().at(-1)!.sealed, false);
  assert.equal(await store.importBlocks(more), 9);
  assertChainIs(store, [...chain, ...more]);
  assertLedgerAndStateAgree(store);
  await store.close();
});

for (const cutIndex of [true, false]) {
  test(`reopening reverts the state to a ledger that lost its last block${cutIndex ? "" : ", index entry left behind"}`, async (t) => {
    const { dir, store } = newStore(t, LARGE_SEGMENT_BYTES);
    const chain = await grow(store, 5);
    await store.close();
    const last = [...readSegments(join(dir, "ledger"))].find((e) => e.kind === "block" && e.height === 5);
    assert.ok(last);
    truncateSync(last.file, last.offset);
    if (cutIndex)
      truncateSync(join(dir, "ledger", "heights.idx"), INDEX_HEADER_BYTES + 4 * INDEX_ENTRY_BYTES);

    const reopened = openStore(dir, LARGE_SEGMENT_BYTES);
    assertChainIs(reopened, chain.slice(0, 4));
    assert.equal(hex(reopened.stateRoot), hex(reopened.readBlock(4).header.stateRoot));
    // The lost block imports again on the reverted state.
    assert.equal(await reopened.importBlocks([chain[4]!]), 1);
    assertChainIs(reopened, chain);
    await reopened.close();
  });
}

/** Chain A: 10 out-of-turn blocks (weight 10); a second store holding A's first 6 blocks, for branches. */
async function forkSetup(t: TestContext) {
  const a = newStore(t);
  const chainA = await grow(a.store, 10, { proposer: outOfTurn });
  assert.equal(a.store.tip().weight, 10n);
  const b = newStore(t);
  assert.equal(await b.store.importBlocks(chainA.slice(0, 6)), 6);
  return { a, b, chainA };
}

test("reorg switches to a heavier branch and the balances reflect that branch only", async (t) => {
  const { a, b, chainA } = await forkSetup(t);
  // 3 in-turn blocks from height 6: weight 6 + 3 × 2 = 12 beats chain A's 10 with fewer blocks.
  const branch = buildBlocks(fx, storeBase(b.store), 3, { amountSalt: 1000n });
  await b.store.close();

  await a.store.reorg(6, branch);
  const chainB = [...chainA.slice(0, 6), ...branch];
  assertChainIs(a.store, chainB);
  assert.equal(a.store.tip().weight, 12n);
  assert.deepEqual(diskHeights(a.dir), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  await a.store.close();

  const reopened = openStore(a.dir);
  assertChainIs(reopened, chainB);
  await reopened.close();
});

test("a reorganisation whose state commit fails after the ledger took the branch (a full disk) is finished from its journal before the next write", async (t) => {
  const { a, b, chainA } = await forkSetup(t);
  const branch = buildBlocks(fx, storeBase(b.store), 3, { amountSalt: 1000n });
  assert.equal(await b.store.importBlocks(branch), 3);
  const next = buildBlocks(fx, storeBase(b.store), 1, { amountSalt: 2000n });
  await b.store.close();
  process.env.CHAINVAULT_FAIL_AT = "chain.reorg.before-commit";
  try {
    await assert.rejects(a.store.reorg(6, branch), /Injected failure at chain.reorg.before-commit/);
  } finally {
    delete process.env.CHAINVAULT_FAIL_AT;
  }
  // The ledger holds the new branch, the state the old one: the next write repairs first.
  const chainB = [...chainA.slice(0, 6), ...branch];
  assert.equal(await a.store.importBlocks(next), 1);
  assertChainIs(a.store, [...chainB, ...next]);
  assertLedgerAndStateAgree(a.store);
  assert.equal(existsSync(reorgJournalPath(a.dir)), false);
  await a.store.close();
});

test("reorg refuses a lighter branch and changes nothing: tip, state root, balances and ledger files", async (t) => {
  const { a, b, chainA } = await forkSetup(t);
  // 3 out-of-turn blocks from height 6: weight 6 + 3 = 9, lighter than chain A's 10.
  const branch = buildBlocks(fx, storeBase(b.store), 3, { proposer: outOfTurn, amountSalt: 1000n });
  await b.store.close();
  const filesBefore = hashTree(join(a.dir, "ledger"));

  await assert.rejects(a.store.reorg(6, branch), (err: unknown) => {
    assert.ok(err instanceof ChainStoreError, `expected a ChainStoreError, got ${String(err)}`);
    assert.equal(err.code, ChainStoreErrorCode.NotBetter);
    return true;
  });
  assertChainIs(a.store, chainA);
  assert.deepEqual(hashTree(join(a.dir, "ledger")), filesBefore);
  // The store still extends its own chain.
  const more = await grow(a.store, 1, { proposer: outOfTurn });
  assertChainIs(a.store, [...chainA, ...more]);
  await a.store.close();
});

test("rollback(h) sets the tip to h and the state root to block h's", async (t) => {
  const { dir, store } = newStore(t);
  const chain = await grow(store, 20);
  // Height 9 lies in the second segment, sealed: the rollback crosses segment boundaries.
  await store.rollback(9);
  assertChainIs(store, chain.slice(0, 9));
  assert.equal(hex(store.stateRoot), hex(chain[8]!.block.header.stateRoot));
  assert.deepEqual(diskHeights(dir), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const more = await grow(store, 3, { amountSalt: 5n });
  await store.close();

  const reopened = openStore(dir);
  assertChainIs(reopened, [...chain.slice(0, 9), ...more]);
  await reopened.close();
});

test("checkpoint copies the tip's data, which validates and stays byte-identical while the chain moves on", async (t) => {
  const { store } = newStore(t);
  await grow(store, 20);
  const tip = store.tip();
  const cp = await store.checkpoint();
  assert.equal(cp.height, tip.height);
  assert.equal(cp.headHash, hex(tip.hash));
  assert.equal(cp.stateRoot, hex(store.stateRoot));
  assert.ok(cp.files.some((f) => f.sealed) && cp.files.some((f) => !f.sealed), "sealed and active files");

  const report = await validateNodeData(cp.dir, fx.genesis);
  assert.equal(report.ok, true, report.fault?.message);
  assert.equal(report.validHeight, cp.height);
  assert.equal(report.validHash, cp.headHash);
  assert.equal(report.stateRoot, cp.stateRoot);
  assert.equal(report.stateDbMatches, true);

  const before = hashTree(cp.dir);
  await grow(store, 10);
  // Rolling back into a sealed segment the checkpoint hard-linked must not reach the checkpoint.
  await store.rollback(10);
  await grow(store, 4, { amountSalt: 3n });
  assert.deepEqual(hashTree(cp.dir), before);
  for (const f of cp.files.filter((x) => x.sealed)) {
    assert.equal(statSync(join(cp.dir, f.path)).size, f.sizeBytes, f.path);
  }

  assert.equal(store.releaseCheckpoint(cp.id), true);
  assert.equal(existsSync(cp.dir), false);
  assert.equal(store.releaseCheckpoint(cp.id), false);
  assertLedgerAndStateAgree(store);
  await store.close();
});
