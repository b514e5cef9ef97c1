/**
 * Crash safety with real processes: a validator of a 4-node devnet under transaction load
 * is killed with SIGKILL at random instants, 30 times; after each restart it must have kept
 * every block it had reported, catch up with its peers, and hold a chain that validates in
 * full (checked on a consistent checkpoint taken from the running node). At the end every
 * node is stopped and its whole data directory validated offline.
 */
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { test } from "node:test";
import { validateNodeData } from "../../src/ledger/validate.js";
import { sleep, TestNet, waitFor } from "./_harness.js";

const ROUNDS = 30;

test("a validator killed with SIGKILL 30 times under load restarts into a valid chain each time and catches up", {
  timeout: 600_000,
}, async () => {
  // 16 KiB segments: many seals and segment switches happen during the test, so kills land in those too.
  const net = await TestNet.create("crash", {
    validators: 4,
    blockTimeMs: 200,
    outOfTurnDelayMs: 300,
    peerPollMs: 100,
    segmentBytes: 16 * 1024,
  });
  try {
    await net.startAll();
    net.startLoad(80, 200);
    const victim = 1;
    for (let round = 1; round <= ROUNDS; round++) {
      await sleep(50 + randomInt(700));
      const before = await net.status(victim);
      await net.kill(victim, "SIGKILL");
      await net.start(victim);
      const after = await net.status(victim);
      assert.ok(
        after.height >= before.height - 1,
        `round ${round}: restarted at height ${after.height}, but had reported ${before.height} before the kill`,
      );

      const target = await net.status(0);
      // 60 s: catching up normally takes under a second, but one clean-clone run timed out at
      // 20 s in round 3 (cause not found; the node logs were gone). The wait is to catch a stuck
      // node, not a slow one, and a failure now reports where every node stands.
      await waitFor(
        `round ${round}: node-1 to catch up to height ${target.height}`,
        async () => {
          const s = await net.status(victim);
          if (s.height < target.height) return false;
          const [theirs] = await net.client(0).hashes(target.height, target.height);
          const [ours] = await net.client(victim).hashes(target.height, target.height);
          return theirs === ours;
        },
        60_000,
        50,
      ).catch(async (err: unknown) => {
        // Say where every node stands, for whoever reads the failure.
        const all = await Promise.all(
          [0, 1, 2, 3].map((i) =>
            net.status(i).then(
              (st) =>
                `node-${i} height ${st.height} head ${st.headHash.slice(0, 12)}${st.syncing ? " syncing" : ""}`,
              (e: unknown) => `node-${i} unreachable: ${(e as Error).message}`,
            ),
          ),
        );
        throw new Error(`${(err as Error).message}; ${all.join("; ")}`);
      });

      const cp = await net.client(victim).checkpoint();
      const report = await validateNodeData(cp.dir, net.genesis);
      assert.ok(
        report.ok,
        `round ${round}: checkpoint at ${cp.height} does not validate: ${JSON.stringify(report.fault)}`,
      );
      assert.equal(report.validHeight, cp.height);
      assert.equal(report.validHash, cp.headHash);
      assert.equal(report.stateRoot, cp.stateRoot);
      await net.client(victim).releaseCheckpoint(cp.id);
    }

    // Settle: no load, no production, then every node's data directory must validate in full.
    const heads = await net.settle();
    for (const i of [0, 1, 2, 3]) await net.kill(i, "SIGTERM");
    const txsSeen = new Set<number>();
    for (const i of [0, 1, 2, 3]) {
      const r = await net.validate(i);
      assert.ok(r.ok, `node-${i} does not validate after the test: ${JSON.stringify(r.fault)}`);
      assert.equal(r.validHash, heads[0]!.headHash);
      assert.equal(r.stateDbMatches, true);
      txsSeen.add(r.txs);
    }
    assert.equal(txsSeen.size, 1);
    assert.ok([...txsSeen][0]! > 100, "the load produced transactions on the chain");
  } finally {
    await net.destroy();
  }
});
