/**
 * A node's /status tells the truth about its disk: a 4-validator devnet runs under
 * transaction load, then production pauses and, while the node still runs, its ledger is
 * read and validated straight from the data directory and compared with what its HTTP API
 * (/status, /blocks/:height, /metrics) reports.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { NodeStatus } from "../../src/chain/client.js";
import { readSegments } from "../../src/chain/storage/segment-reader.js";
import { validateNodeData } from "../../src/ledger/validate.js";
import { TestNet, waitFor } from "./_harness.js";

const NODES = [0, 1, 2, 3];
const OBSERVED = 2;

/** The value of an unlabelled gauge or counter in Prometheus text, or undefined if absent. */
function metricValue(metrics: string, name: string): number | undefined {
  for (const line of metrics.split("\n")) {
    const [key, value] = line.trim().split(/\s+/);
    if (key === name && value !== undefined) return Number(value);
  }
  return undefined;
}

test("a paused node's /status, /blocks and /metrics match the chain it holds on disk", {
  timeout: 60_000,
}, async () => {
  const net = await TestNet.create("status", {
    validators: 4,
    blockTimeMs: 200,
    outOfTurnDelayMs: 300,
    peerPollMs: 100,
  });
  try {
    await net.startAll();
    net.startLoad(40, 64);
    // Enough transactions that the state root differs from genesis and the segments hold real blocks.
    await waitFor(
      "node-2 to import 60 transactions",
      async () =>
        (metricValue(await net.client(OBSERVED).metrics(), "chainvault_chain_txs_imported_total") ?? 0) >= 60,
      20_000,
      200,
    );
    await net.stopLoad();
    await Promise.all(NODES.map((i) => net.client(i).setProducing(false)));
    // A block already in production when the pause arrived may still land: require the same
    // head on every node in two polls in a row.
    let agreed: string | undefined;
    let seen: NodeStatus[] = [];
    await waitFor(
      "all nodes to agree on one head, twice in a row",
      async () => {
        seen = await Promise.all(NODES.map((i) => net.status(i)));
        const heads = new Set(seen.map((s) => s.headHash));
        const head = heads.size === 1 ? [...heads][0] : undefined;
        const stable = head !== undefined && head === agreed;
        agreed = head;
        return stable;
      },
      20_000,
      150,
    ).catch((err: Error) => {
      // Say where each node stands, and what its log said last, so a failure can be read.
      const where = seen.map(
        (s, i) =>
          `node-${i}: height ${s.height} head ${s.headHash.slice(0, 12)} syncing ${s.syncing} lag ${s.lagBlocks} peers ${JSON.stringify(s.peers)}\n${readFileSync(join(net.dataDir(i), "logs", "node.log"), "utf8").slice(-1200)}`,
      );
      throw new Error(`${err.message}\n${where.join("\n")}`);
    });

    const client = net.client(OBSERVED);
    const status: NodeStatus = await client.status();
    assert.equal(status.headHash, agreed);
    assert.equal(status.producing, false);
    assert.ok(status.height >= 5, `the chain grew under load (height ${status.height})`);
    assert.notEqual(
      status.stateRoot,
      net.genesis.stateRoot.toString("hex"),
      "transactions changed the state",
    );

    // The node keeps running (paused) while its data directory is read.
    const report = await validateNodeData(net.dataDir(OBSERVED), net.genesis);
    assert.ok(report.ok, JSON.stringify(report.fault));
    assert.equal(report.validHeight, status.height);
    assert.equal(report.validHash, status.headHash);
    assert.equal(report.stateRoot, status.stateRoot);
    assert.equal(report.stateDbMatches, true);
    // Fewer than the 60 counted above is possible: the counter also counts transactions of
    // blocks that a fork choice later replaced, and the pause can strand some in mempools.
    assert.ok(report.txs > 0, `the ledger holds the load's transactions (${report.txs})`);

    let lastBlock: number | undefined;
    for (const e of readSegments(join(net.dataDir(OBSERVED), "ledger"))) {
      assert.notEqual(e.kind, "fault", JSON.stringify(e));
      if (e.kind === "block") lastBlock = e.height;
    }
    assert.equal(lastBlock, status.height, "the last block record on disk is the reported head");

    const head = await client.blockJson(status.height);
    assert.equal(head.hash, status.headHash);
    assert.equal(head.stateRoot, status.stateRoot);
    assert.equal(head.height, status.height);

    const height = metricValue(await client.metrics(), "chainvault_chain_height");
    assert.equal(height, status.height, "chainvault_chain_height is the reported head");

    assert.deepEqual(
      await client.status().then((s) => [s.height, s.headHash, s.stateRoot]),
      [status.height, status.headHash, status.stateRoot],
      "the head did not move while the disk was read",
    );
  } finally {
    await net.destroy();
  }
});
