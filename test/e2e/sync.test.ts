/**
 * Synchronisation with real processes: a node started empty syncs a generated chain of
 * 10,000 blocks with transactions from a peer and ends with the same head and a chain that
 * validates; a validator stopped for 30 s while the others keep producing catches up.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readDevnet } from "../../src/chain/devnet.js";
import { generateChain } from "../../src/chain/generator.js";
import { sleep, TestNet, tempDir, waitFor } from "./_harness.js";

test("a node started empty syncs a chain of 10,000 blocks with transactions from a peer", {
  timeout: 300_000,
}, async () => {
  const dir = join(tempDir("sync10k"), "net");
  const gen = await generateChain(dir, {
    blocks: 10_000,
    txsPerBlock: 4,
    payloadBytes: 64,
    segmentBytes: 1024 * 1024,
  });
  const net = new TestNet(dir, readDevnet(dir));
  try {
    await net.start(0);
    // Stop node-0 from extending the chain so the target is fixed.
    await net.client(0).setProducing(false);
    const source = await net.status(0);
    // node-0 may have added a block of its own before the pause reached it.
    assert.ok(source.height >= 10_000 && source.height <= 10_002, `source height ${source.height}`);
    const t0 = Date.now();
    await net.start(1);
    const synced = await waitFor(
      `node-1 to reach height ${source.height}`,
      async () => {
        const s = await net.status(1);
        return s.height >= source.height ? s : false;
      },
      240_000,
      200,
    );
    const seconds = (Date.now() - t0) / 1000;
    // node-1 is a validator and may have added a block of its own once synced: compare at the source's height.
    const [hashThere] = await net.client(1).hashes(source.height, source.height);
    assert.equal(hashThere, source.headHash);
    assert.ok(synced.height <= source.height + 2);
    await net.kill(1, "SIGTERM");
    const r = await net.validate(1);
    assert.ok(r.ok, JSON.stringify(r.fault));
    assert.ok(r.validHeight >= source.height);
    assert.ok(r.txs >= 40_000);
    process.stdout.write(`# synced 10,000 blocks (${gen.ledgerBytes} bytes) in ${seconds.toFixed(1)} s\n`);
  } finally {
    await net.destroy();
    rmSync(join(dir, ".."), { recursive: true, force: true });
  }
});

test("a validator down for 30 s catches up with the others when it restarts", {
  timeout: 180_000,
}, async () => {
  const net = await TestNet.create("catchup", {
    validators: 4,
    blockTimeMs: 200,
    outOfTurnDelayMs: 300,
    peerPollMs: 100,
  });
  try {
    await net.startAll();
    net.startLoad(40, 100);
    await waitFor("a few blocks", async () => (await net.status(0)).height >= 5, 20_000);
    await net.kill(3, "SIGKILL");
    const down = (await net.status(0)).height;
    await sleep(30_000);
    const ahead = await net.status(0);
    assert.ok(
      ahead.height > down + 20,
      `the other validators kept producing (from ${down} to ${ahead.height})`,
    );
    await net.start(3);
    await waitFor(
      `node-3 to catch up to ${ahead.height}`,
      async () => {
        const s = await net.status(3);
        if (s.height < ahead.height) return false;
        const [a] = await net.client(0).hashes(ahead.height, ahead.height);
        const [b] = await net.client(3).hashes(ahead.height, ahead.height);
        return a === b;
      },
      30_000,
    );
    await net.settle();
    await net.kill(3, "SIGTERM");
    const r = await net.validate(3);
    assert.ok(r.ok, JSON.stringify(r.fault));
    assert.ok(r.validHeight >= ahead.height);
  } finally {
    await net.destroy();
  }
});
