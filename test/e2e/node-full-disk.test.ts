/**
 * A validator whose disk fills up under load keeps running and serving its chain, stops
 * adding blocks without writing half of one, reports it on /health and in its log, and
 * resumes producing once space is freed; its chain then validates. Real processes: the node
 * runs in a user and mount namespace of the test's own (`unshare`), its data directory on a
 * tmpfs a few hundred KiB larger than its contents, mounted over it; the namespace's script
 * enlarges the tmpfs when the test asks (a file it polls for) and copies the data directory
 * out when the node stops.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { NodeClient } from "../../src/chain/client.js";
import { cliCommand, nodeEnv } from "../../src/chain/devnet.js";
import { Genesis } from "../../src/chain/genesis.js";
import { ExitCode } from "../../src/cli/exit-codes.js";
import { validateNodeData } from "../../src/ledger/validate.js";
import { isAlive, sleep, TestNet, waitFor } from "./_harness.js";

// The node's data directory gets this much room beyond what it holds at the start: a few
// seconds of blocks under the load below.
const HEADROOM_KIB = 768;

/** Bash lines that put $DATA on a tmpfs $HEADROOM_KIB larger than what it holds (its files kept). */
const SMALL_DISK = `set -u
D="$DATA"; mkdir -p "$OUT/orig" "$OUT/after"; cp -a "$D/." "$OUT/orig/"
mount -t tmpfs -o size=$(( $(du -sk "$D" | cut -f1) + HEADROOM_KIB ))k none "$D"
cp -a "$OUT/orig/." "$D/"
`;

/** `unshare`'s arguments: SMALL_DISK then `script` in a user and mount namespace, "$@" starting the node at `dataDir`. */
function namespaceArgv(script: string, dataDir: string): string[] {
  const [cmd, ...args] = cliCommand();
  const bash = ["bash", "-c", SMALL_DISK + script, "ns", cmd!, ...args, "node", "start", "--data", dataDir];
  return ["--user", "--map-root-user", "--mount", ...bash];
}

const SCRIPT = `"$@" > "$OUT/node.out" 2>&1 &
pid=$!
echo $pid > "$OUT/pid"
while kill -0 $pid 2>/dev/null; do
  if [ -e "$OUT/grow" ] && [ ! -e "$OUT/grown" ]; then mount -o remount,size=256m "$D" && touch "$OUT/grown"; fi
  sleep 0.1
done
wait $pid; echo $? > "$OUT/node.code"
cp -a "$D/." "$OUT/after/"
touch "$OUT/done"
`;

async function health(url: string): Promise<{ code: number; body: Record<string, unknown> }> {
  const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
  return { code: r.status, body: (await r.json()) as Record<string, unknown> };
}

test("a validator whose disk fills up keeps serving, reports disk-full, writes no half block, and resumes once space is freed", {
  timeout: 120_000,
}, async () => {
  const net = await TestNet.create("full-disk", { validators: 1, blockTimeMs: 200 });
  const out = join(net.dir, "ns");
  mkdirSync(out);
  const nd = net.dataDir(0);
  const url = net.node(0).url;
  const child = spawn("unshare", namespaceArgv(SCRIPT, nd), {
    env: { ...nodeEnv(), DATA: nd, OUT: out, HEADROOM_KIB: String(HEADROOM_KIB) },
    stdio: "ignore",
  });

  const pidOf = (): number => Number(readFileSync(join(out, "pid"), "utf8"));
  try {
    const client = new NodeClient(url, { timeoutMs: 2000 });
    await waitFor("the node in its namespace to answer", () => client.health(500).then(() => true), 30_000);
    net.startLoad(100, 1024);

    // The disk fills: /health says so, the height stops, the process stays up and serves.
    const full = await waitFor(
      "the node to report a full disk",
      async () => {
        const h = await health(url);
        return h.code === 503 ? h : false;
      },
      60_000,
      200,
    );
    assert.equal(full.body.status, "disk-full");
    assert.match(String(full.body.error), /ENOSPC|database or disk is full/);
    const stalled = (await net.status(0)).height;
    await sleep(2500);
    const still = await net.status(0);
    assert.equal(still.height, stalled, "no block is added while the disk is full");
    assert.ok(isAlive(pidOf()), "the node process is still running");
    const [hashAtTip] = await client.hashes(stalled, stalled);
    assert.equal(hashAtTip, still.headHash, "it serves its chain");

    // Space is freed: production resumes on its own.
    writeFileSync(join(out, "grow"), "");
    await waitFor("the tmpfs to grow", () => existsSync(join(out, "grown")), 10_000);
    const resumed = await waitFor(
      "blocks to be produced again",
      async () => {
        const s = await net.status(0);
        return s.height >= stalled + 5 ? s : false;
      },
      30_000,
      200,
    );
    assert.equal((await health(url)).code, 200);
    await net.stopLoad();

    // Stopped: the data directory, copied out of the namespace, holds a valid chain.
    process.kill(pidOf(), "SIGTERM");
    await waitFor("the namespace to copy the data out", () => existsSync(join(out, "done")), 30_000);
    const after = join(out, "after");
    const r = await validateNodeData(after, Genesis.load(join(net.dir, "genesis.json")));
    assert.ok(r.ok, JSON.stringify(r.fault));
    assert.ok(
      r.validHeight >= resumed.height,
      `valid to ${r.validHeight}, the node reported ${resumed.height}`,
    );
    const log = readFileSync(join(after, "logs", "node.log"), "utf8");
    assert.match(log, /Disk full: the node cannot write its data directory/);
    assert.match(log, /Disk space available again/);
    assert.equal(readFileSync(join(out, "node.code"), "utf8").trim(), "0", "the node exited cleanly");
  } finally {
    await net.stopLoad();
    if (existsSync(join(out, "pid")) && isAlive(pidOf())) process.kill(pidOf(), "SIGKILL");
    child.kill("SIGKILL");
    await net.destroy();
  }
});

test("a node started on a full disk exits 7 naming where the disk is full, without a stack and without leaving an empty lock", {
  timeout: 60_000,
}, async () => {
  const net = await TestNet.create("full-disk-start", { validators: 1 });
  const out = join(net.dir, "ns");
  mkdirSync(out);
  const nd = net.dataDir(0);
  const script = `dd if=/dev/zero of="$D/filler" bs=4k 2>/dev/null
"$@" > "$OUT/start.out" 2> "$OUT/start.err"; echo $? > "$OUT/start.code"
ls -A "$D" > "$OUT/listing"
`;
  try {
    const r = spawnSync("unshare", namespaceArgv(script, nd), {
      env: { ...nodeEnv(), DATA: nd, OUT: out, HEADROOM_KIB: "64" },
      encoding: "utf8",
      timeout: 50_000,
    });

    assert.equal(r.status, 0, r.stderr);
    const err = readFileSync(join(out, "start.err"), "utf8");
    assert.equal(readFileSync(join(out, "start.code"), "utf8").trim(), String(ExitCode.NoSpace), err);
    assert.match(err, /^chainvault: Cannot start the node: the disk holding .*node-0.* is full \(ENOSPC/);
    assert.doesNotMatch(err, /\n\s+at /, "no stack trace");
    assert.ok(
      !readFileSync(join(out, "listing"), "utf8").split("\n").includes("LOCK"),
      "no lock left behind",
    );
  } finally {
    await net.destroy();
  }
});
