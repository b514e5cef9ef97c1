/**
 * A reorganisation killed half-way: a child process switches a store to a heavier branch
 * and is SIGKILLed after writing its redo journal, or after cutting the ledger back to the
 * fork point. Reopening must finish the switch from the journal: the heavier branch, its
 * balances, a chain that validates, never a node left below both branches.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { hex } from "../../src/chain/crypto.js";
import { ChainStore, REORG_JOURNAL } from "../../src/chain/storage/chain-store.js";
import { validateNodeData } from "../../src/ledger/validate.js";
import { silentLogger } from "../../src/util/logger.js";
import {
  buildBlocks,
  hashTree,
  makeChainFixture,
  outOfTurn,
  storeBase,
  tempDir,
} from "../integration/_chain-fixture.js";

const fx = makeChainFixture();

function open(dir: string): ChainStore {
  return ChainStore.open(fx.genesis, { dataDir: dir, segmentBytes: 4096, undoDepth: 0 }, silentLogger());
}

for (const point of ["chain.reorg.after-journal", "chain.reorg.after-truncate", "ledger.torn-record:1"]) {
  test(`a reorganisation killed at ${point} is finished from its journal on reopen`, async (t) => {
    const root = tempDir(t, "reorg-crash");
    const a = join(root, "a");
    const b = join(root, "b");
    // Chain A: 10 out-of-turn blocks (weight 10). Branch B: 3 in-turn blocks after height 6 (weight 12).
    const sa = open(a);
    const chainA = buildBlocks(fx, storeBase(sa), 10, { proposer: outOfTurn });
    await sa.importBlocks(chainA);
    await sa.close();
    const sb = open(b);
    await sb.importBlocks(chainA.slice(0, 6));
    const branch = buildBlocks(fx, storeBase(sb), 3, { amountSalt: 1000n });
    await sb.close();

    const victim = join(root, "victim");
    cpSync(a, victim, { recursive: true });
    const jobPath = join(root, "job.json");
    writeFileSync(
      jobPath,
      JSON.stringify({
        dataDir: victim,
        genesis: fx.genesis.doc,
        ancestor: 6,
        blocks: branch.map((x) => x.bytes.toString("hex")),
      }),
    );
    const child = spawnSync(
      process.execPath,
      ["--import", "tsx", join(import.meta.dirname, "_reorg-child.ts"), jobPath],
      {
        env: { ...process.env, CHAINVAULT_CRASH_AT: point },
        encoding: "utf8",
      },
    );
    assert.equal(
      child.signal,
      "SIGKILL",
      `the child died at the crash point (status ${child.status}, stderr ${child.stderr})`,
    );
    assert.ok(existsSync(join(victim, "ledger", REORG_JOURNAL)), "the redo journal survived the crash");

    const reopened = open(victim);
    const tip = reopened.tip();
    assert.equal(tip.height, 9);
    assert.equal(hex(tip.hash), hex(branch[2]!.hash));
    assert.equal(tip.weight, 12n);
    assert.equal(hex(reopened.stateRoot), hex(branch[2]!.block.header.stateRoot));
    await reopened.close();
    assert.ok(!existsSync(join(victim, "ledger", REORG_JOURNAL)), "the journal is removed once applied");
    const r = await validateNodeData(victim, fx.genesis);
    assert.ok(r.ok, JSON.stringify(r.fault));
    assert.equal(r.validHash, hex(branch[2]!.hash));
  });
}

test("a ledger append that fails with an I/O error leaves the ledger files as they were", async (t) => {
  const dir = tempDir(t, "append-fail");
  const s = open(dir);
  const first = buildBlocks(fx, storeBase(s), 5);
  await s.importBlocks(first);
  const before = hashTree(join(dir, "ledger"));
  const next = buildBlocks(fx, storeBase(s), 40);
  process.env.CHAINVAULT_FAIL_AT = "ledger.before-index";
  try {
    await assert.rejects(s.importBlocks(next), /Injected failure/);
  } finally {
    delete process.env.CHAINVAULT_FAIL_AT;
  }
  assert.deepEqual(hashTree(join(dir, "ledger")), before, "no byte of the failed append remains");
  assert.equal(s.tip().height, 5);
  await s.importBlocks(next);
  assert.equal(s.tip().height, 45);
  await s.close();
  const r = await validateNodeData(dir, fx.genesis);
  assert.ok(r.ok, JSON.stringify(r.fault));
  assert.equal(r.validHeight, 45);
});
