// Goal: prove the backup round trip on real nodes: a backup of a running validator under load restores into a directory from which it starts, validates its chain and catches up; a stopped node's components come back byte-identical; a partial restore leaves the other components alone; method: a 3-validator devnet of real processes on loopback, with a generated history and a load generator, driven by the `chainvault` CLI as a user runs it (child processes, password in CHAINVAULT_PASSWORD).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { readDevnet } from "../../src/chain/devnet.js";
import { generateChain } from "../../src/chain/generator.js";
import { validateNodeData } from "../../src/ledger/validate.js";
import { TestNet, tempDir, waitFor } from "./_harness.js";

const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const ENV = { ...process.env, CHAINVAULT_PASSWORD: "round-trip test password" };
// What a node's backup holds, by component root; LOCK and checkpoints/ belong to the running
// process and are not backed up.
const COMPONENT_ROOTS = ["ledger", "state", "node.json", "genesis.json", "keys", "admin.token", "logs"];
// 100 blocks of 20 transfers with 1,000-byte payloads (~2.3 MB): a history large enough that
// what changes between two backups a few seconds apart is a small part of the node, small
// enough to sync and validate in about a second.
const HISTORY = { blocks: 100, txsPerBlock: 20, payloadBytes: 1000 };
// 128 KiB segments: the history spans some 18 sealed segments that an incremental backup
// must not read again, and the growing segment that it does read stays small.
const SEGMENT_BYTES = 128 * 1024;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `chainvault <args>` from source, as `node --import tsx src/cli/main.ts` would. */
function chainvault(args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], {
      env: ENV,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Runs a command that must succeed with `--json` and returns its parsed output. */
async function chainvaultJson<T>(args: string[]): Promise<T> {
  const r = await chainvault([...args, "--json"]);
  assert.equal(r.code, 0, `chainvault ${args.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as T;
}

interface BackupJson {
  snapshotId: string;
  parent?: string;
  live: boolean;
  files: { new: number; changed: number; unmodified: number };
  totalBytes: number;
  readBytes: number;
  anchor: { height: number; headHash: string; stateRoot: string };
}

interface RestoreJson {
  snapshotId: string;
  components: string[];
  keptAside?: string;
}

interface FileFacts {
  sha256: string;
  mode: number;
  ino: number;
}

/** Every regular file under `dir` (relative `/` paths), or only under `roots`, with hash, mode and inode. */
function filesOf(dir: string, roots?: readonly string[]): Map<string, FileFacts> {
  const out = new Map<string, FileFacts>();
  const walk = (rel: string): void => {
    const abs = join(dir, rel);
    if (!existsSync(abs)) return;
    const st = statSync(abs);
    if (st.isDirectory()) {
      for (const name of readdirSync(abs).sort()) walk(rel === "" ? name : `${rel}/${name}`);
      return;
    }
    const sha256 = createHash("sha256").update(readFileSync(abs)).digest("hex");
    out.set(rel, { sha256, mode: st.mode & 0o777, ino: st.ino });
  };
  for (const r of roots ?? [""]) walk(r);
  return out;
}

const hashesOf = (m: Map<string, FileFacts>): Record<string, string> =>
  Object.fromEntries([...m].map(([p, f]) => [p, f.sha256]));

let net: TestNet;
let repo: string;

/** The harness's settle, failing with every node's view of the chain. */
async function settle() {
  try {
    return await net.settle(30_000);
  } catch (err) {
    const views = await Promise.all(
      net.dn.nodes.map((_, i) =>
        net.status(i).then(
          (s) =>
            `${s.nodeId} ${s.height} ${s.headHash.slice(0, 12)} producing=${s.producing} syncing=${s.syncing}`,
          (e: unknown) => `node-${i} ${(e as Error).message}`,
        ),
      ),
    );
    throw new Error(`${(err as Error).message}; nodes: ${views.join("; ")}`);
  }
}

// The node that the stopped-node tests back up and restore.
const STOPPED = 2;
let stopped: Promise<{ backup: BackupJson; files: Map<string, FileFacts> }> | undefined;

/** Stops a node (cleanly, once the devnet settles) and backs it up; only the first call does it. */
function stoppedNodeBackup(): Promise<{ backup: BackupJson; files: Map<string, FileFacts> }> {
  stopped ??= (async () => {
    await settle();
    await net.kill(STOPPED, "SIGTERM");
    const dataDir = net.dataDir(STOPPED);
    const files = filesOf(dataDir, COMPONENT_ROOTS);
    assert.ok([...files.keys()].filter((p) => p.startsWith("ledger/seg-")).length >= 2);
    const backup = await chainvaultJson<BackupJson>([
      "backup",
      "--repo",
      repo,
      "--node",
      dataDir,
      "--tag",
      "manual",
    ]);
    return { backup, files };
  })();
  return stopped;
}

before(async () => {
  const dir = join(tempDir("vault-rt"), "net");
  const gen = await generateChain(dir, {
    ...HISTORY,
    validators: 3,
    blockTimeMs: 200,
    segmentBytes: SEGMENT_BYTES,
  });
  net = new TestNet(dir, readDevnet(dir));
  // Peers polled every 100 ms: the empty nodes sync the history, and a restored node catches up, quickly.
  for (const i of [0, 1, 2]) {
    const path = join(net.dataDir(i), "node.json");
    writeFileSync(
      path,
      JSON.stringify({ ...JSON.parse(readFileSync(path, "utf8")), peerPollMs: 100 }, null, 2),
    );
  }
  repo = join(dir, "..", "repo");
  const [, init] = await Promise.all([net.startAll(), chainvault(["repo", "init", "--repo", repo])]);
  assert.equal(init.code, 0, init.stderr);
  // 50 transfers a second with 500-byte payloads: every block carries transactions, and the
  // nodes keep up with it on two busy cores.
  net.startLoad(50, 500);
  await waitFor(
    `every node to hold the generated history (height ${gen.height})`,
    async () => (await Promise.all([0, 1, 2].map((i) => net.status(i)))).every((s) => s.height >= gen.height),
    30_000,
  );
});

after(async () => {
  // before() may have failed before the devnet existed.
  if (!net) return;
  await net.destroy();
  rmSync(join(net.dir, ".."), { recursive: true, force: true });
});

test("a backup of a running validator under load restores into a directory from which it starts, validates its chain and catches up", {
  timeout: 90_000,
}, async () => {
  const victim = 1;
  const dataDir = net.dataDir(victim);

  const first = await chainvaultJson<BackupJson>([
    "backup",
    "--repo",
    repo,
    "--node",
    dataDir,
    "--tag",
    "hourly",
  ]);
  assert.equal(first.live, true, "the running node was read through its checkpoint");
  // Ten blocks (2 s) apart at least: the second backup has new blocks, state and a grown segment to find.
  await waitFor(
    "ten more blocks after the first backup",
    async () => (await net.status(victim)).height >= first.anchor.height + 10,
    20_000,
  );
  const second = await chainvaultJson<BackupJson>([
    "backup",
    "--repo",
    repo,
    "--node",
    dataDir,
    "--tag",
    "hourly",
  ]);
  assert.equal(second.live, true);
  assert.equal(second.parent, first.snapshotId, "the second backup is incremental on the first");
  assert.ok(second.anchor.height >= first.anchor.height + 10);
  assert.ok(
    second.readBytes * 4 < second.totalBytes,
    `the incremental backup read ${second.readBytes} of ${second.totalBytes} bytes: ${JSON.stringify(second.files)}`,
  );
  // No backup leaves a checkpoint behind in the running node.
  assert.deepEqual(readdirSync(join(dataDir, "checkpoints")), []);

  const verified = await chainvault(["verify", "--repo", repo, "latest", "--read-data", "--chain", "--json"]);
  assert.equal(verified.code, 0, `verify failed: ${verified.stderr}${verified.stdout}`);
  const vr = JSON.parse(verified.stdout) as { ok: boolean; snapshots: { id: string; levels: object }[] };
  assert.equal(vr.ok, true);
  assert.deepEqual(
    vr.snapshots.map((s) => [s.id, s.levels]),
    [[second.snapshotId, { structure: true, data: true, chain: true }]],
  );

  // Disaster: the node dies and its data directory is lost.
  await net.kill(victim, "SIGKILL");
  renameSync(dataDir, `${dataDir}.lost`);
  const restored = await chainvaultJson<RestoreJson>([
    "restore",
    "--repo",
    repo,
    "latest",
    "--target",
    dataDir,
  ]);
  assert.equal(restored.snapshotId, second.snapshotId);
  assert.equal(restored.keptAside, undefined, "nothing was at the target to keep aside");

  // The restored directory holds a valid chain, exactly the anchored one.
  const offline = await validateNodeData(dataDir, net.genesis);
  assert.ok(offline.ok, `the restored chain does not validate: ${JSON.stringify(offline.fault)}`);
  assert.equal(offline.validHeight, second.anchor.height);
  assert.equal(offline.validHash, second.anchor.headHash);
  assert.equal(offline.stateRoot, second.anchor.stateRoot);
  assert.equal(offline.stateDbMatches, true);

  // Same config, port and keys: the node starts from the restored directory alone.
  await net.start(victim);
  const atStart = await net.status(victim);
  assert.ok(
    atStart.height >= second.anchor.height,
    `restarted at ${atStart.height}, below the anchor ${second.anchor.height}`,
  );
  const ahead = await net.status(0);
  assert.ok(ahead.height > second.anchor.height, "the other validators kept producing meanwhile");
  await waitFor(
    `node-1 to catch up to height ${ahead.height}`,
    async () => {
      const s = await net.status(victim);
      if (s.height < ahead.height) return false;
      const [theirs] = await net.client(0).hashes(ahead.height, ahead.height);
      const [ours] = await net.client(victim).hashes(ahead.height, ahead.height);
      return theirs === ours;
    },
    30_000,
  );
  const heads = await settle();
  assert.equal(new Set(heads.map((h) => h.headHash)).size, 1, "every node agrees on one head");
});

test("a stopped node's components restore byte-identical into a new directory", {
  timeout: 60_000,
}, async () => {
  const dataDir = net.dataDir(STOPPED);
  const { backup: b, files: source } = await stoppedNodeBackup();
  assert.equal(b.live, false, "a stopped node is read from its directory");
  const target = join(net.dir, "..", "node-2-restored");
  await chainvaultJson<RestoreJson>(["restore", "--repo", repo, b.snapshotId, "--target", target]);
  const back = filesOf(target);
  // Every file of every component, and nothing else.
  assert.deepEqual(hashesOf(back), hashesOf(source));
  for (const [p, f] of source) assert.equal(back.get(p)?.mode, f.mode, `mode of ${p}`);
  assert.deepEqual(filesOf(dataDir, COMPONENT_ROOTS), source, "the backup left the node's files alone");
});

test("a restore of only the ledger replaces the ledger and leaves state, config and keys alone", {
  timeout: 60_000,
}, async () => {
  const dataDir = net.dataDir(STOPPED);
  const { backup: b, files } = await stoppedNodeBackup();
  const backedUpLedger = new Map([...files].filter(([p]) => p.startsWith("ledger/")));
  assert.deepEqual(filesOf(dataDir, ["ledger"]), backedUpLedger, "the stopped node's ledger is as backed up");

  // After the backup the ledger is damaged (its newest segment lost), the operator changed
  // the config and left a note: a restore of the ledger must undo none of that.
  const segments = [...backedUpLedger.keys()].filter((p) => p.startsWith("ledger/seg-")).sort();
  assert.ok(segments.length >= 2);
  rmSync(join(dataDir, segments.at(-1)!));
  const cfgPath = join(dataDir, "node.json");
  const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as Record<string, unknown>;
  writeFileSync(cfgPath, `${JSON.stringify({ ...cfg, logLevel: "warn" }, null, 2)}\n`);
  writeFileSync(join(dataDir, "NOTES.txt"), "ledger damaged; restoring it from the vault\n");
  const others = [...COMPONENT_ROOTS.filter((r) => r !== "ledger"), "NOTES.txt"];
  const before = filesOf(dataDir, others);
  const damagedLedger = filesOf(dataDir, ["ledger"]);

  const r = await chainvaultJson<RestoreJson>([
    "restore",
    "--repo",
    repo,
    b.snapshotId,
    "--target",
    dataDir,
    "--components",
    "ledger",
  ]);
  assert.deepEqual(r.components, ["ledger"]);
  // The other files are the very same files (same inodes, same bytes), the operator's change included.
  assert.deepEqual(filesOf(dataDir, others), before);
  assert.match(readFileSync(cfgPath, "utf8"), /"logLevel": "warn"/);
  // The ledger is the backed-up one again; the damaged one is kept aside, alone.
  assert.deepEqual(hashesOf(filesOf(dataDir, ["ledger"])), hashesOf(backedUpLedger));
  assert.ok(r.keptAside?.startsWith(`${dataDir}.pre-restore-`), `kept aside in ${r.keptAside}`);
  assert.deepEqual(readdirSync(r.keptAside!), ["ledger"]);
  assert.deepEqual(hashesOf(filesOf(r.keptAside!, ["ledger"])), hashesOf(damagedLedger));
});
