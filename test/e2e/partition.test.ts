/**
 * Network partition with real processes: a 4-validator devnet is split into two halves
 * that cannot see each other; both halves keep producing, so the chain forks for real.
 * When the partition heals, fork choice must bring every node onto the heavier branch
 * (the losers reorganising), and every node's chain must validate afterwards.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { sleep, TestNet, waitFor } from "./_harness.js";

test("a partition forks the chain and, once healed, every node converges on the heavier branch", {
  timeout: 180_000,
}, async () => {
  const net = await TestNet.create("partition", {
    validators: 4,
    blockTimeMs: 200,
    outOfTurnDelayMs: 200,
    peerPollMs: 100,
  });
  const urls = net.dn.nodes.map((n) => n.url);
  try {
    await net.startAll();
    net.startLoad(20, 32);
    await waitFor("a common prefix of 5 blocks", async () => (await net.status(0)).height >= 5, 20_000);

    // Split {0,1} from {2,3}.
    await Promise.all([
      net.client(0).setPeers([urls[1]!]),
      net.client(1).setPeers([urls[0]!]),
      net.client(2).setPeers([urls[3]!]),
      net.client(3).setPeers([urls[2]!]),
    ]);
    const splitAt = Math.max(
      ...(await Promise.all([0, 1, 2, 3].map((i) => net.status(i)))).map((s) => s.height),
    );
    await sleep(4000);
    const [a, b] = await Promise.all([net.status(0), net.status(2)]);
    if (!(a.height > splitAt + 3 && b.height > splitAt + 3)) {
      const logs = [0, 1, 2, 3].map(
        (i) => `node-${i}:\n${readFileSync(join(net.dataDir(i), "logs", "node.log"), "utf8").slice(-1500)}`,
      );
      assert.fail(
        `both halves kept producing (split at ${splitAt}: ${a.height} and ${b.height})\n${logs.join("\n")}`,
      );
    }
    const h = Math.min(a.height, b.height);
    const [ha] = await net.client(0).hashes(h, h);
    const [hb] = await net.client(2).hashes(h, h);
    assert.notEqual(ha, hb, `the halves forked: same block at height ${h}`);
    const winnerWeight =
      BigInt(a.weight) > BigInt(b.weight) || (a.weight === b.weight && a.headHash < b.headHash) ? a : b;

    // Heal, then let fork choice work; production is paused once the nodes have met.
    await Promise.all([0, 1, 2, 3].map((i) => net.client(i).setPeers(urls.filter((_, j) => j !== i))));
    await waitFor(
      "every node on one branch",
      async () => {
        const st = await Promise.all([0, 1, 2, 3].map((i) => net.status(i)));
        const low = Math.min(...st.map((s) => s.height));
        const hs = await Promise.all([0, 1, 2, 3].map((i) => net.client(i).hashes(low, low)));
        return new Set(hs.map((x) => x[0])).size === 1;
      },
      30_000,
    );
    const final = await net.settle();
    assert.ok(
      BigInt(final[0]!.weight) >= BigInt(winnerWeight.weight),
      "the surviving chain is at least as heavy as the heavier half was",
    );
    const metrics = await Promise.all([0, 1, 2, 3].map((i) => net.client(i).metrics()));
    const reorgs = metrics.map((m) => Number(/^chainvault_chain_reorgs_total (\d+)/m.exec(m)?.[1] ?? "0"));
    assert.ok(
      reorgs.some((r) => r > 0),
      `some node reorganised (reorgs per node: ${reorgs.join(", ")})`,
    );

    for (const i of [0, 1, 2, 3]) await net.kill(i, "SIGTERM");
    for (const i of [0, 1, 2, 3]) {
      const r = await net.validate(i);
      assert.ok(r.ok, `node-${i}: ${JSON.stringify(r.fault)}`);
      assert.equal(r.validHash, final[0]!.headHash);
    }
  } finally {
    await net.destroy();
  }
});
