/**
 * `chainvault demo`: a 4-validator devnet under transaction load, shown producing blocks,
 * then paused so that every node can be seen agreeing on one head; then stopped cleanly.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeClient } from "../chain/client.js";
import { adminTokenOf, devnetDown, devnetInit, devnetStatus, devnetUp, readDevnet } from "../chain/devnet.js";
import { printTable, short } from "./output.js";

export interface DemoOptions {
  dir?: string;
  durationS: number;
  keep: boolean;
}

export async function runDemo(o: DemoOptions): Promise<boolean> {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), "chainvault-demo-"));
  const say = (s: string): void => {
    process.stdout.write(`${s}\n`);
  };
  say(`chainvault demo: a 4-validator proof-of-authority devnet in ${dir}`);
  await devnetInit(dir, { validators: 4, blockTimeMs: 500, outOfTurnDelayMs: 500, peerPollMs: 250 });
  let agreed = false;
  try {
    say("Starting 4 validator processes on loopback with a load of 25 transactions/s…");
    await devnetUp(dir, { loadTps: 25, payloadBytes: 64 });
    const until = Date.now() + o.durationS * 1000;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 2500));
      const st = await devnetStatus(dir);
      say(`\n[${new Date().toISOString().slice(11, 19)}] blocks being produced:`);
      printTable(
        st.map((s) => ({
          node: s.id,
          up: s.up,
          height: s.status?.height ?? "-",
          head: short(s.status?.headHash),
          peers: s.status ? s.status.peers.filter((p) => p.reachable).length : "-",
          mempool: s.status?.mempoolTxs ?? "-",
        })),
      );
    }
    say("\nPausing block production so the nodes settle on one head…");
    const dn = readDevnet(dir);
    await Promise.all(
      dn.nodes.map((n) => new NodeClient(n.url, { adminToken: adminTokenOf(dir, n) }).setProducing(false)),
    );
    const deadline = Date.now() + 30_000;
    let st = await devnetStatus(dir);
    while (Date.now() < deadline) {
      st = await devnetStatus(dir);
      const heads = new Set(st.map((s) => (s.status ? `${s.status.height}/${s.status.headHash}` : "down")));
      if (heads.size === 1 && !heads.has("down")) {
        agreed = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    printTable(
      st.map((s) => ({
        node: s.id,
        height: s.status?.height ?? "-",
        head: s.status?.headHash ?? "-",
        stateRoot: short(s.status?.stateRoot),
      })),
    );
    const s0 = st[0]?.status;
    if (agreed && s0) say(`\nAll ${st.length} nodes agree: height ${s0.height}, head ${s0.headHash}`);
    else
      say(
        "\nThe nodes did not agree on one head within 30 s: see the node logs under each node's logs/ directory",
      );
  } finally {
    say("Stopping the devnet…");
    await devnetDown(dir);
    if (!o.keep && !o.dir) rmSync(dir, { recursive: true, force: true });
    else say(`Devnet kept in ${dir}`);
  }
  return agreed;
}
