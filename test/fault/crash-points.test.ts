/**
 * Deterministic crash injection: a node process is made to SIGKILL itself at a named
 * point of the write path (torn record, ledger written but state not committed, segments
 * written but index not, just after a seal), while syncing a chain from a peer or while
 * producing its own blocks. On restart it must log the matching recovery, reach the
 * peer's head, and hold a chain that validates in full.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { decodeBlock, encodeBlock } from "../../src/chain/block.js";
import { readDevnet } from "../../src/chain/devnet.js";
import { generateChain } from "../../src/chain/generator.js";
import { LedgerStore } from "../../src/chain/storage/ledger-store.js";
import { silentLogger } from "../../src/util/logger.js";
import { isAlive, TestNet, tempDir, waitFor } from "../e2e/_harness.js";

let net: TestNet;
let target: { height: number; headHash: string };

before(async () => {
  const dir = join(tempDir("crashpoints"), "net");
  // 32 KiB segments: a sync of 600 blocks seals many segments.
  await generateChain(dir, {
    blocks: 600,
    txsPerBlock: 5,
    payloadBytes: 100,
    segmentBytes: 32 * 1024,
    validators: 2,
  });
  net = new TestNet(dir, readDevnet(dir));
  // node-1 syncs as a non-validator, so the only writes it makes are imports.
  const cfgPath = join(net.dataDir(1), "node.json");
  const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as Record<string, unknown>;
  delete cfg.validatorKey;
  writeFileSync(cfgPath, JSON.stringify(cfg));
  await net.start(0);
  await net.client(0).setProducing(false);
  const s = await net.status(0);
  target = { height: s.height, headHash: s.headHash };
});

after(async () => {
  await net?.destroy();
});

async function crashThenRecover(point: string, expectLog: RegExp): Promise<void> {
  // Start from an empty node-1 each time.
  for (const sub of ["ledger", "state", "logs", "checkpoints"])
    rmSync(join(net.dataDir(1), sub), { recursive: true, force: true });
  process.env.CHAINVAULT_CRASH_AT = point;
  try {
    await net.start(1).catch(() => undefined);
  } finally {
    delete process.env.CHAINVAULT_CRASH_AT;
  }
  const pid = net.pids.get("node-1");
  assert.ok(pid, "node-1 was started");
  await waitFor(`node-1 to crash at ${point}`, () => !isAlive(pid), 60_000, 20);
  net.pids.delete("node-1");
  const crashedLog = readFileSync(join(net.dataDir(1), "logs", "node.log"), "utf8");

  await net.start(1);
  const log = readFileSync(join(net.dataDir(1), "logs", "node.log"), "utf8").slice(crashedLog.length);
  const out = readFileSync(join(net.dataDir(1), "logs", "process.out"), "utf8").slice(-1500);
  assert.match(
    log,
    expectLog,
    `the restart after ${point} performed the expected recovery; before the crash:\n${crashedLog.slice(-1500)}\nprocess output:\n${out}`,
  );
  await waitFor(
    `node-1 to reach ${target.height} after recovering from ${point}`,
    async () => {
      const s = await net.status(1);
      return s.height === target.height && s.headHash === target.headHash;
    },
    60_000,
  );
  await net.kill(1, "SIGTERM");
  const r = await net.validate(1);
  assert.ok(r.ok, `after ${point}: ${JSON.stringify(r.fault)}`);
  assert.equal(r.validHeight, target.height);
  assert.equal(r.stateDbMatches, true);
}

test("a torn record at the ledger tail is cut on restart and the chain validates", {
  timeout: 120_000,
}, async () => {
  await crashThenRecover("ledger.torn-record:40", /Cutting a torn record from the ledger tail/);
});

test("blocks in the ledger whose state never committed are replayed on restart", {
  timeout: 120_000,
}, async () => {
  await crashThenRecover("chain.import.after-ledger-append:1", /Replaying ledger blocks into the state/);
});

test("segments written before their index entries are re-indexed on restart", {
  timeout: 120_000,
}, async () => {
  await crashThenRecover("ledger.before-index:1", /Re-indexed ledger blocks from the segments/);
});

test("a crash just after sealing a segment leaves a ledger that reopens and validates", {
  timeout: 120_000,
}, async () => {
  await crashThenRecover(
    "ledger.after-seal:3",
    /Re-indexed ledger blocks from the segments|Replaying ledger blocks/,
  );
});

/**
 * Restarts a crashed sole validator, waits for its chain to pass `height`, pauses it, notes
 * the hash at `hashAt`, stops it and checks its whole chain validates; returns that hash.
 */
async function restartValidateAndStop(solo: TestNet, height: number, hashAt: number): Promise<string[]> {
  await solo.start(0);
  await waitFor(
    `production to continue past ${height}`,
    async () => (await solo.status(0)).height >= height,
    20_000,
  );
  await solo.client(0).setProducing(false);
  const s = await solo.status(0);
  const hashes = await solo.client(0).hashes(hashAt, hashAt);
  await solo.kill(0, "SIGTERM");
  const r = await solo.validate(0);
  assert.ok(r.ok, JSON.stringify(r.fault));
  assert.ok(r.validHeight >= s.height);
  return hashes;
}

function openLedger(solo: TestNet): LedgerStore {
  return LedgerStore.open(
    { dir: join(solo.dataDir(0), "ledger"), segmentBytes: 1 << 26, weightOf: () => 2n },
    silentLogger(),
  );
}

/** A devnet of one validator (fast blocks), started with a crash point and left crashed there. */
async function crashSoleValidator(prefix: string, point: string): Promise<TestNet> {
  const solo = await TestNet.create(prefix, {
    validators: 1,
    blockTimeMs: 100,
    outOfTurnDelayMs: 100,
    peerPollMs: 100,
  });
  process.env.CHAINVAULT_CRASH_AT = point;
  try {
    await solo.start(0).catch(() => undefined);
  } finally {
    delete process.env.CHAINVAULT_CRASH_AT;
  }
  const pid = solo.pids.get("node-0")!;
  await waitFor(`the validator to crash at ${point}`, () => !isAlive(pid), 30_000, 20).catch(async (err) => {
    await solo.destroy();
    throw err;
  });
  solo.pids.delete("node-0");
  return solo;
}

test("a validator that crashes after writing its own block keeps it and never signs that height again", {
  timeout: 120_000,
}, async () => {
  const solo = await crashSoleValidator("crash-producer", "chain.import.after-ledger-append:8");
  try {
    const wm = JSON.parse(readFileSync(join(solo.dataDir(0), "keys", "watermark.json"), "utf8")) as {
      height: number;
    };
    assert.equal(wm.height, 8, "the watermark recorded height 8 before the signature");
    const [h8] = await restartValidateAndStop(solo, 10, 8);
    // Block 8 is the one written before the crash: kept and replayed, not signed again.
    const led = openLedger(solo);
    try {
      assert.equal(led.entry(8)!.hash.toString("hex"), h8);
    } finally {
      led.close();
    }
    const log = readFileSync(join(solo.dataDir(0), "logs", "node.log"), "utf8");
    assert.match(log, /Replaying ledger blocks into the state/);
  } finally {
    await solo.destroy();
  }
});

test("a sole validator killed between its watermark and storing its block signs that same block again on restart, and the chain goes on", {
  timeout: 120_000,
}, async () => {
  const solo = await crashSoleValidator("crash-watermark", "node.produce.after-watermark:6");
  try {
    const wmPath = join(solo.dataDir(0), "keys", "watermark.json");
    const wm = JSON.parse(readFileSync(wmPath, "utf8")) as { height: number; pending?: string };
    assert.equal(wm.height, 6, "the watermark recorded height 6 before the signature");
    assert.ok(wm.pending, "with the block about to be signed");
    // The node is the only validator: without its block 6 the chain could never grow again.
    await restartValidateAndStop(solo, 9, 6);
    // Block 6 is the content recorded with the watermark, signed once more (same signature).
    const led = openLedger(solo);
    try {
      const stored = decodeBlock(led.readBlockBytes(6));
      const unsigned = encodeBlock({
        header: { ...stored.header, signature: Buffer.alloc(64) },
        txs: stored.txs,
      });
      assert.equal(unsigned.toString("base64"), wm.pending);
    } finally {
      led.close();
    }
    const log = readFileSync(join(solo.dataDir(0), "logs", "node.log"), "utf8");
    assert.match(log, /Storing the block this validator was signing when it stopped/);
  } finally {
    await solo.destroy();
  }
});
