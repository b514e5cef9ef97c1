/**
 * bench/chain: how fast a fresh node syncs a generated chain from a peer, and how fast a
 * full offline validation runs, each beside this machine's ed25519 verification rate
 * measured in the same run with the same primitive (Node's crypto.verify over 32-byte
 * messages, on all cores: the best of the libuv thread pool and one worker thread per
 * core). Verification is meant to be the bottleneck: the target is at least 70% of that
 * rate.
 *
 *   node dist/bench/chain/run.js [--blocks 5000] [--txs-per-block 40] [--payload-bytes 128] [--rounds 3]
 *
 * Each round measures the rate, validates, measures, syncs, measures. Prints a table of
 * every round, the median round of each phase, and ends with one JSON line (the medians,
 * with every round's ratio beside them).
 */
import { generateKeyPairSync, sign, verify } from "node:crypto";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { NodeClient } from "../../src/chain/client.js";
import { spawnNode, waitHealthy } from "../../src/chain/devnet.js";
import { generateChain } from "../../src/chain/generator.js";
import { Genesis } from "../../src/chain/genesis.js";
import { validateNodeData } from "../../src/ledger/validate.js";

const { values: args } = parseArgs({
  options: {
    blocks: { type: "string", default: "5000" },
    "txs-per-block": { type: "string", default: "40" },
    "payload-bytes": { type: "string", default: "128" },
    rounds: { type: "string", default: "3" },
    keep: { type: "boolean", default: false },
  },
});
const blocks = Number(args.blocks);
const txsPerBlock = Number(args["txs-per-block"]);
const payloadBytes = Number(args["payload-bytes"]);
const rounds = Math.max(1, Number(args.rounds));

// Verifies batches of signatures on one worker thread, synchronously, as the chain's check
// workers do: the second way this machine can spend all its cores on ed25519.
const VERIFY_WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const { createPublicKey, verify } = require("node:crypto");
const key = createPublicKey({ key: Buffer.from(workerData.spki), format: "der", type: "spki" });
parentPort.on("message", ({ msgs, sigs, from, to }) => {
  let ok = 0;
  for (let i = from; i < to; i++)
    if (verify(null, Buffer.from(msgs.buffer, i * 32, 32), key, Buffer.from(sigs.buffer, i * 64, 64))) ok++;
  parentPort.postMessage(ok);
});
`;

interface Ed25519Rates {
  poolPerSec: number;
  workersPerSec: number;
  oneThreadPerSec: number;
  /** The reference: the best of the thread pool and the worker threads. */
  bestPerSec: number;
}

async function ed25519Rate(): Promise<Ed25519Rates> {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  // 20,000 signatures over 32-byte messages: the chain signs the sha256 of each
  // transaction's and header's signing input, so this is the same work per signature.
  const n = 20_000;
  const msgs = Array.from({ length: n }, (_, i) => Buffer.alloc(32, i & 0xff));
  const sigs = msgs.map((m) => sign(null, m, privateKey));
  let t = performance.now();
  for (let i = 0; i < n; i++) verify(null, msgs[i]!, publicKey, sigs[i]!);
  const oneThreadPerSec = n / ((performance.now() - t) / 1000);
  // The best of three runs of each: the reference is what the machine can do, not an
  // unlucky moment, by whichever of Node's two ways of using every core does better.
  let poolPerSec = 0;
  for (let run = 0; run < 3; run++) {
    t = performance.now();
    await Promise.all(
      msgs.map(
        (m, i) => new Promise<boolean>((r) => verify(null, m, publicKey, sigs[i]!, (_e, ok) => r(ok))),
      ),
    );
    poolPerSec = Math.max(poolPerSec, n / ((performance.now() - t) / 1000));
  }
  const cores = availableParallelism();
  const spki = publicKey.export({ format: "der", type: "spki" });
  const allMsgs = new Uint8Array(Buffer.concat(msgs));
  const allSigs = new Uint8Array(Buffer.concat(sigs));
  const workers = Array.from(
    { length: cores },
    () => new Worker(VERIFY_WORKER, { eval: true, workerData: { spki } }),
  );
  const runOnAll = (count: number): Promise<number[]> =>
    Promise.all(
      workers.map(
        (w, k) =>
          new Promise<number>((r) => {
            w.once("message", r);
            const per = Math.ceil(count / cores);
            w.postMessage({
              msgs: allMsgs,
              sigs: allSigs,
              from: k * per,
              to: Math.min(count, (k + 1) * per),
            });
          }),
      ),
    );
  let workersPerSec = 0;
  try {
    await runOnAll(cores * 50); // start-up and warm-up
    for (let run = 0; run < 3; run++) {
      t = performance.now();
      const ok = (await runOnAll(n)).reduce((a, b) => a + b, 0);
      if (ok !== n) throw new Error(`worker threads verified ${ok} of ${n} signatures`);
      workersPerSec = Math.max(workersPerSec, n / ((performance.now() - t) / 1000));
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return { poolPerSec, workersPerSec, oneThreadPerSec, bestPerSec: Math.max(poolPerSec, workersPerSec) };
}

function row(
  name: string,
  seconds: number,
  nBlocks: number,
  bytes: number,
  sigs: number,
  rate: number,
): Record<string, string> {
  return {
    measure: name,
    seconds: seconds.toFixed(2),
    "blocks/s": (nBlocks / seconds).toFixed(0),
    "MB/s": (bytes / seconds / 1e6).toFixed(2),
    "sigs/s": (sigs / seconds).toFixed(0),
    "of ed25519 rate": `${((sigs / seconds / rate) * 100).toFixed(0)}%`,
  };
}

/** One round: the machine's rate, validation, the rate, a fresh node's sync, the rate. */
interface Round {
  before: Ed25519Rates;
  between: Ed25519Rates;
  after: Ed25519Rates;
  validateS: number;
  syncS: number;
  syncFromSpawnS: number;
  syncedBlocks: number;
}

async function main(): Promise<void> {
  const root = join(tmpdir(), `cv-bench-chain-${process.pid}`);
  const dir = join(root, "net");
  process.stderr.write(
    `Generating ${blocks} blocks × ${txsPerBlock} transactions (${payloadBytes}-byte payloads)…\n`,
  );
  const gen = await generateChain(dir, { blocks, txsPerBlock, payloadBytes });
  const genesis = Genesis.load(join(dir, "genesis.json"));
  const sigs = blocks * (txsPerBlock + 1);

  // The syncing node is a non-validator, so it only imports.
  const n1dir = join(dir, "node-1");
  const n1cfg = join(n1dir, "node.json");
  const cfg = JSON.parse(readFileSync(n1cfg, "utf8")) as Record<string, unknown>;
  delete cfg.validatorKey;
  cfg.logLevel = "warn";
  writeFileSync(n1cfg, JSON.stringify(cfg));
  // What the fresh node's directory holds before its first start: each round starts it from this.
  const n1files = new Set(readdirSync(n1dir));
  const dn = JSON.parse(readFileSync(join(dir, "devnet.json"), "utf8")) as {
    nodes: { id: string; dataDir: string; url: string; validator: boolean }[];
  };
  let source: number | undefined;
  try {
    source = spawnNode(dir, dn.nodes[0]!);
    if (!(await waitHealthy(dn.nodes[0]!.url, 30_000))) throw new Error("source node did not start");
    const token = readFileSync(join(dir, "node-0", "admin.token"), "utf8").trim();
    const src = new NodeClient(dn.nodes[0]!.url, { adminToken: token });
    await src.setProducing(false);
    const target = (await src.status()).height;
    const results: Round[] = [];
    for (let r = 1; r <= rounds; r++) {
      // The machine's rate is measured before, between and after the two timed phases,
      // and each phase is set against the better of the measurements on either side of
      // it: this machine is shared, and its rate moves by a third within minutes.
      process.stderr.write(`Round ${r} of ${rounds}: measuring ed25519 verification…\n`);
      const before = await ed25519Rate();
      process.stderr.write(`Round ${r} of ${rounds}: validating the chain offline…\n`);
      const v = await validateNodeData(join(dir, "node-0"), genesis);
      if (!v.ok) throw new Error(`Generated chain does not validate: ${JSON.stringify(v.fault)}`);
      const between = await ed25519Rate();
      process.stderr.write(`Round ${r} of ${rounds}: syncing ${target} blocks into a fresh node…\n`);
      const sync = await syncFresh(dir, dn.nodes[1]!, target);
      for (const name of readdirSync(n1dir))
        if (!n1files.has(name)) rmSync(join(n1dir, name), { recursive: true, force: true });
      const after = await ed25519Rate();
      results.push({ before, between, after, validateS: v.elapsedMs / 1000, ...sync });
    }

    const validateRef = (x: Round): number => Math.max(x.before.bestPerSec, x.between.bestPerSec);
    const syncRef = (x: Round): number => Math.max(x.between.bestPerSec, x.after.bestPerSec);
    const syncedSigs = (x: Round): number => Math.round(sigs * (x.syncedBlocks / target));
    const syncedBytes = (x: Round): number => Math.round(gen.ledgerBytes * (x.syncedBlocks / target));
    const validateRatio = (x: Round): number => sigs / x.validateS / validateRef(x);
    const syncRatio = (x: Round): number => syncedSigs(x) / x.syncS / syncRef(x);
    const primitive = (measure: string, rate: Ed25519Rates): Record<string, string> => ({
      measure,
      seconds: "-",
      "blocks/s": "-",
      "MB/s": "-",
      "sigs/s": `${rate.bestPerSec.toFixed(0)} (pool ${rate.poolPerSec.toFixed(0)}, workers ${rate.workersPerSec.toFixed(0)}, 1 thread ${rate.oneThreadPerSec.toFixed(0)})`,
      "of ed25519 rate": "-",
    });
    const table = results.flatMap((x, k) => [
      primitive(`${k + 1}: ed25519 verify, before`, x.before),
      row(`${k + 1}: full validation (offline)`, x.validateS, blocks, gen.ledgerBytes, sigs, validateRef(x)),
      primitive(`${k + 1}: ed25519 verify, between`, x.between),
      row(
        `${k + 1}: fresh node sync from a peer`,
        x.syncS,
        x.syncedBlocks,
        syncedBytes(x),
        syncedSigs(x),
        syncRef(x),
      ),
      row(
        `${k + 1}:   same, from process spawn`,
        x.syncFromSpawnS,
        target,
        gen.ledgerBytes,
        sigs,
        syncRef(x),
      ),
      primitive(`${k + 1}: ed25519 verify, after`, x.after),
    ]);
    console.log(
      `chain: ${blocks} blocks, ${blocks * txsPerBlock} transactions, ${(gen.ledgerBytes / 1e6).toFixed(1)} MB of ledger, generated in ${(gen.elapsedMs / 1000).toFixed(1)} s (${(gen.ledgerBytes / gen.elapsedMs / 1e3).toFixed(1)} MB/s); ${availableParallelism()} cores`,
    );
    console.table(table);
    // The summary is the median round of each phase (by its ratio): one unlucky or lucky
    // moment of a shared machine moves it less than it moves any single round.
    const mv = median(results, validateRatio);
    const ms = median(results, syncRatio);
    const ratios = (f: (x: Round) => number): string =>
      results.map((x) => `${(f(x) * 100).toFixed(0)}%`).join(", ");
    console.log(
      `median of ${rounds} rounds: validation ${(validateRatio(mv) * 100).toFixed(0)}% (${ratios(validateRatio)}), sync ${(syncRatio(ms) * 100).toFixed(0)}% (${ratios(syncRatio)}) of the ed25519 rate`,
    );
    console.log(
      JSON.stringify({
        cores: availableParallelism(),
        rounds,
        generate_mb_per_s: Number((gen.ledgerBytes / gen.elapsedMs / 1e3).toFixed(2)),
        blocks,
        txs: blocks * txsPerBlock,
        ledger_bytes: gen.ledgerBytes,
        ed25519_verify_per_s: results.map((x) =>
          [x.before, x.between, x.after].map((q) => Math.round(q.bestPerSec)),
        ),
        validate_blocks_per_s: Math.round(blocks / mv.validateS),
        validate_mb_per_s: Number((gen.ledgerBytes / mv.validateS / 1e6).toFixed(2)),
        validate_ratio_of_ed25519: Number(validateRatio(mv).toFixed(3)),
        validate_ratios: results.map((x) => Number(validateRatio(x).toFixed(3))),
        sync_blocks_per_s: Math.round(ms.syncedBlocks / ms.syncS),
        sync_mb_per_s: Number((syncedBytes(ms) / ms.syncS / 1e6).toFixed(2)),
        sync_ratio_of_ed25519: Number(syncRatio(ms).toFixed(3)),
        sync_ratios: results.map((x) => Number(syncRatio(x).toFixed(3))),
        sync_seconds_from_spawn: Number(ms.syncFromSpawnS.toFixed(2)),
      }),
    );
  } finally {
    if (source !== undefined) await stopNodes([source]);
    if (!args.keep) rmSync(root, { recursive: true, force: true });
  }
}

/** The element whose `f` is the median (the lower middle one for an even count). */
function median<T>(xs: T[], f: (x: T) => number): T {
  return [...xs].sort((a, b) => f(a) - f(b))[Math.floor((xs.length - 1) / 2)]!;
}

/**
 * Starts the fresh node, times its sync up to `target` and stops it. Throughput is timed
 * from the node's first answer (the process has loaded and opened its store); the total
 * from the spawn is reported beside it.
 */
async function syncFresh(
  dir: string,
  node: { id: string; dataDir: string; url: string; validator: boolean },
  target: number,
): Promise<{ syncS: number; syncFromSpawnS: number; syncedBlocks: number }> {
  const tSpawn = performance.now();
  const pid = spawnNode(dir, node);
  try {
    const c1 = new NodeClient(node.url);
    // Polls are spaced to a quarter of the time the sync still needs at its pace so far
    // (20-500 ms): each poll costs both processes CPU, and the end is still seen within
    // a few tens of milliseconds.
    let t0 = 0;
    let h0 = 0;
    for (;;) {
      const s = await c1.status(2000).catch(() => undefined);
      if (s && t0 === 0) {
        t0 = performance.now();
        h0 = s.height;
      }
      if (s && s.height >= target) break;
      const elapsed = performance.now() - t0;
      const pace = s && t0 > 0 && s.height > h0 ? (s.height - h0) / elapsed : 0;
      const wait = pace > 0 ? Math.min(500, Math.max(20, (target - s!.height) / pace / 4)) : 50;
      await new Promise((r) => setTimeout(r, wait));
    }
    const tEnd = performance.now();
    return { syncS: (tEnd - t0) / 1000, syncFromSpawnS: (tEnd - tSpawn) / 1000, syncedBlocks: target - h0 };
  } finally {
    await stopNodes([pid]);
  }
}

async function stopNodes(pids: number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // Already gone.
    }
  }
  // Each must be gone (its store closed) before its directory is reused or removed.
  const deadline = Date.now() + 10_000;
  for (const pid of pids) {
    while (Date.now() < deadline && alive(pid)) await new Promise((r) => setTimeout(r, 50));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

await main();
