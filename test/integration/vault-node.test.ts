// Goal: prove the vault keeps a node's data safe over its life, through the library and through the chainvault command: a stopped node's backup comes back byte-identical (full, partial and delta restore), an incremental backup after new blocks reads and stores only what changed, verification catches damage and forged manifests, forget and prune remove what no snapshot keeps without ever rewriting ledger packs, an off-site copy restores byte-identical, and the CLI creates a repository, backs up, lists, verifies and restores with its documented exit codes, a wrong password exiting with code 6 without showing the password or writing anything; method: generate a real node directory with the chain generator (and the same node 20 blocks later with its append mode), back it up into LocalBackend repositories in a temp directory, run restore, verify, forget, prune and copySnapshots from the library, damage objects by hand, and compare sha256, modes, inodes and byte counters; the CLI runs as child processes (`node --import tsx src/cli/main.ts`) on a copy of the node, started at the beginning and checked at the end, so its process start-ups overlap the library tests.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { offlineAnchor } from "../../src/adapters/node-backup-source.js";
import { ExitCode } from "../../src/cli/exit-codes.js";
import { backupNode } from "../../src/recovery/node-backup.js";
import { LocalBackend } from "../../src/vault/backends/local.js";
import { backup } from "../../src/vault/backup.js";
import { copySnapshots } from "../../src/vault/copy.js";
import { open, seal } from "../../src/vault/crypto.js";
import { VaultError, VaultErrorCode } from "../../src/vault/errors.js";
import { forget } from "../../src/vault/forget.js";
import { parsePackObjectName } from "../../src/vault/pack.js";
import { prune } from "../../src/vault/prune.js";
import { Repository } from "../../src/vault/repository.js";
import { restore } from "../../src/vault/restore.js";
import { type Manifest, manifestChunks } from "../../src/vault/snapshot.js";
import { verify } from "../../src/vault/verify.js";
import { tempDir } from "./_chain-fixture.js";
import {
  contentOf,
  copyNode,
  filesOf,
  makeFiles,
  type NodeFixture,
  newRepo,
  repoFiles,
  SMALL_CHUNKER,
  sharedNodes,
  treeOf,
} from "./_vault-fixture.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PASSWORD = "cli test passphrase 7f3a";
const WRONG = "wrong passphrase 0c1d";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI from the sources, as `chainvault <args>`, with CHAINVAULT_PASSWORD its only CHAINVAULT_ variable. */
function cli(args: string[], password = PASSWORD): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("CHAINVAULT_")) delete env[k];
  env.CHAINVAULT_PASSWORD = password;
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function ok(r: Run, what: string): void {
  assert.equal(r.code, ExitCode.Ok, `${what} exited ${r.code}: ${r.stderr}`);
}

/** Starts a step now and lets a test await it later; a failure is reported by that test. */
function step<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

// The node at two heights: v2 is v1 after the generator appended 20 blocks. Backups of each
// make distinct snapshots that share most of their data, as hourly backups of a node do.
let nodes: Awaited<ReturnType<typeof sharedNodes>>;
// The CLI's own directory: its repositories, its copy of the node, its restore target.
let cliDir: string;
let cliRepo: string;
let cliOtherRepo: string;
let cliTarget: string;
let cliNode: NodeFixture;
let steps: {
  init: Promise<Run>;
  wrong: Promise<{ run: Run; before: Map<string, string>; after: Map<string, string> }>;
  backup: Promise<Run>;
  verify: Promise<Run>;
  restore: Promise<Run>;
  snapshots: Promise<Run>;
};

before(async () => {
  cliDir = mkdtempSync(join(tmpdir(), "chainvault-vault-cli-"));
  cliRepo = join(cliDir, "repo");
  cliOtherRepo = join(cliDir, "other-repo");
  cliTarget = join(cliDir, "restored");
  // Each CLI run pays for a Node start-up, so independent runs go at once and all of them
  // overlap the library tests. In order:
  //   node generation, repo init, a wrong password (on another repository)
  //   → backup → verify and restore → snapshots (after verify, to show its record)
  const other = await newRepo(cliDir, "other-repo", PASSWORD);
  await backup(other.repo, makeFiles(cliDir, { "a.bin": 20_000 }).source);
  const init = step(cli(["repo", "init", "--repo", cliRepo, "--json"]));
  const wrong = step(
    (async () => {
      const before = repoFiles(cliOtherRepo);
      // verify would write a verification record if the password opened the repository.
      const run = await cli(["verify", "--repo", cliOtherRepo, "--read-data"], WRONG);
      return { run, before, after: repoFiles(cliOtherRepo) };
    })(),
  );
  nodes = await sharedNodes("vault-node", 20);
  // A copy of its own: reading a node's anchor briefly creates files in its state folder,
  // which a library test backing up the same directory at that moment would see.
  cliNode = copyNode(nodes.v1, join(cliDir, "node"));
  const backupRun = step(
    init.then(() =>
      cli(["backup", "--repo", cliRepo, "--node", cliNode.nodeDir, "--tag", "manual", "--json"]),
    ),
  );
  const verifyRun = step(backupRun.then(() => cli(["verify", "--repo", cliRepo, "--read-data", "--json"])));
  steps = {
    init,
    wrong,
    backup: backupRun,
    verify: verifyRun,
    restore: step(
      // With a trailing slash, as a shell completes a directory name.
      backupRun.then(() =>
        cli(["restore", "latest", "--repo", cliRepo, "--target", `${cliTarget}/`, "--json"]),
      ),
    ),
    snapshots: step(verifyRun.then(() => cli(["snapshots", "--repo", cliRepo, "--json"]))),
  };
});

after(async () => {
  // Every started command has finished before the directories go.
  if (steps) await Promise.allSettled(Object.values(steps));
  nodes?.dispose();
  if (cliDir) rmSync(cliDir, { recursive: true, force: true });
});

test("a stopped node restores byte-identical with its modes and times, and the manifest holds its offline anchor", async (t) => {
  const dir = tempDir(t, "vault-rt-full");
  const node = nodes.v1;
  const { repo } = await newRepo(dir);
  const before = treeOf(node.nodeDir);

  const b = await backupNode(repo, node.nodeDir, { tags: ["manual"] });
  assert.equal(b.live, false);
  // Reading the anchor opens the state database read-only: that must leave no file behind.
  assert.deepEqual(contentOf(treeOf(node.nodeDir)), contentOf(before), "the backup left the node as it was");
  assert.deepEqual(b.anchor, offlineAnchor(node.nodeDir));
  assert.equal(b.anchor.height, node.height);
  const snap = await repo.readSnapshot(b.snapshotId);
  assert.ok("manifest" in snap);
  assert.deepEqual(snap.manifest.anchor, offlineAnchor(node.nodeDir));
  assert.deepEqual(snap.manifest.tags, ["manual"]);
  assert.deepEqual(
    snap.manifest.components.map((c) => c.name),
    ["ledger", "state", "config", "keys", "logs"],
  );

  const target = join(dir, "restored");
  const r = await restore(repo, "latest", target);
  assert.equal(r.snapshotId, b.snapshotId);
  assert.equal(r.keptAside, undefined);
  assert.deepEqual(r.warnings, []);
  const after = treeOf(target);
  assert.deepEqual(contentOf(after), contentOf(before));
  for (const [p, e] of before)
    if (e.type === "file")
      assert.ok(Math.abs(after.get(p)!.mtimeMs - e.mtimeMs) < 1, `${p} keeps its modification time`);
  assert.ok([...before.values()].some((e) => e.type === "file" && e.mode === 0o600));
  // Nothing is left beside the target: no staging tree, no journal.
  assert.deepEqual(
    readdirSync(dir)
      .filter((n) => n.startsWith("restored") || n.startsWith(".restored"))
      .sort(),
    ["restored"],
  );
});

test("a partial restore of the ledger leaves the other components untouched and keeps the replaced ledger aside", async (t) => {
  const dir = tempDir(t, "vault-rt-partial");
  const node = nodes.v1;
  const { repo } = await newRepo(dir);
  const b = await backupNode(repo, node.nodeDir);
  const target = join(dir, "target");
  await restore(repo, b.snapshotId, target);

  // The operator's node has moved on: its state and config differ from the snapshot, and
  // its ledger is damaged (one segment overwritten, one missing, one stray file).
  const segs = readdirSync(join(target, "ledger")).filter((n) => n.startsWith("seg-"));
  assert.ok(segs.length >= 4, `the ledger spans ${segs.length} segments`);
  writeFileSync(join(target, "state", "state.db"), "local state newer than the snapshot");
  writeFileSync(join(target, "node.json"), '{"edited": true}\n');
  writeFileSync(join(target, "ledger", segs[1]!), "damaged");
  writeFileSync(join(target, "ledger", "stray.tmp"), "stray");
  chmodSync(target, 0o750);
  const damagedLedger = filesOf(treeOf(target), "ledger");
  const othersBefore = new Map(
    [...treeOf(target)].filter(([p]) => p !== "ledger" && !p.startsWith("ledger/")),
  );

  const r = await restore(repo, b.snapshotId, target, { components: ["ledger"] });
  assert.deepEqual(r.components, ["ledger"]);
  const after = treeOf(target);
  // The ledger is the snapshot's again.
  assert.deepEqual(filesOf(after, "ledger"), filesOf(treeOf(node.nodeDir), "ledger"));
  assert.equal(after.has("ledger/stray.tmp"), false);
  // Everything else is the very same files: content, mode, time and inode.
  const othersAfter = new Map([...after].filter(([p]) => p !== "ledger" && !p.startsWith("ledger/")));
  assert.deepEqual(othersAfter, othersBefore);
  assert.equal(readFileSync(join(target, "node.json"), "utf8"), '{"edited": true}\n');
  assert.equal(statSync(target).mode & 0o7777, 0o750, "the target directory keeps its mode");
  // The replaced ledger is kept aside, whole, until the operator removes it.
  assert.ok(r.keptAside);
  assert.match(r.keptAside, /target\.pre-restore-/);
  const aside = treeOf(r.keptAside);
  assert.deepEqual(filesOf(aside, "ledger"), damagedLedger);
  assert.deepEqual(
    [...aside.keys()].filter((p) => !p.startsWith("ledger")),
    [],
    "only the replaced component is kept aside",
  );
});

test("a delta restore fetches only the chunks that differ and still yields identical files", async (t) => {
  const dir = tempDir(t, "vault-rt-delta");
  const node = nodes.v1;
  const { repo } = await newRepo(dir);
  const b = await backupNode(repo, node.nodeDir);
  const target = join(dir, "target");
  await restore(repo, b.snapshotId, target);

  // Flip bytes in the middle of one sealed segment and of the height index, in place.
  const seg = join(
    target,
    "ledger",
    readdirSync(join(target, "ledger")).filter((n) => n.startsWith("seg-"))[2]!,
  );
  const bytes = readFileSync(seg);
  bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
  writeFileSync(seg, bytes);
  const idx = join(target, "ledger", "heights.idx");
  const ib = readFileSync(idx);
  ib[100]! ^= 0x01;
  writeFileSync(idx, ib);

  const r = await restore(repo, b.snapshotId, target, { delta: true });
  assert.deepEqual(contentOf(treeOf(target)), contentOf(treeOf(node.nodeDir)));
  // Each edit spoils the chunk around it, and at most its neighbour when the edit falls in
  // the hash window before a cut: four maximal chunks bound what must come from the repository.
  assert.ok(r.fetchedBytes > 0, "the damaged chunks were fetched");
  assert.ok(r.fetchedBytes <= 4 * SMALL_CHUNKER.maxBytes, `fetched ${r.fetchedBytes} of ${r.bytes} bytes`);
  assert.equal(r.fetchedBytes + r.reusedBytes, r.bytes);
});

test("an incremental backup after new blocks reads only changed files and new tails, adds little, and restores the new chain", async (t) => {
  const dir = tempDir(t, "vault-rt-incr");
  const { repo } = await newRepo(dir);
  const first = await backupNode(repo, nodes.v1.nodeDir);
  assert.equal(first.readBytes, first.totalBytes, "the first backup reads everything");
  const before = treeOf(nodes.v1.nodeDir);

  // v2 is the same node after the generator appended 20 blocks.
  const after = treeOf(nodes.v2.nodeDir);
  const unchanged = [...after].filter(([p, e]) => {
    const was = before.get(p);
    return e.type === "file" && was?.sizeBytes === e.sizeBytes && was.mtimeMs === e.mtimeMs;
  });
  const changedBytes = [...after]
    .filter(([p, e]) => e.type === "file" && !unchanged.some(([u]) => u === p))
    .reduce((s, [, e]) => s + e.sizeBytes, 0);
  assert.ok(unchanged.length >= 6, `${unchanged.length} files are unchanged (sealed segments, keys, config)`);

  const second = await backupNode(repo, nodes.v2.nodeDir);
  assert.equal(second.parent, first.snapshotId);
  assert.equal(second.anchor.height, nodes.v2.height);
  assert.equal(second.anchor.height, nodes.v1.height + 20);
  assert.equal(second.files.unmodified, unchanged.length);
  // Unchanged files are not read at all; the growing ledger files only from their tails.
  assert.ok(
    second.readBytes < changedBytes,
    `read ${second.readBytes} bytes, the changed files hold ${changedBytes}`,
  );
  assert.ok(
    second.readBytes < 0.4 * second.totalBytes,
    `read ${second.readBytes} of ${second.totalBytes} bytes`,
  );
  assert.ok(
    second.rawBytesAdded < 0.4 * second.totalBytes,
    `added ${second.rawBytesAdded} of ${second.totalBytes} bytes`,
  );

  const target = join(dir, "restored");
  await restore(repo, second.snapshotId, target);
  assert.deepEqual(contentOf(treeOf(target)), contentOf(after));
  const again = join(dir, "restored-first");
  await restore(repo, first.snapshotId, again);
  assert.deepEqual(contentOf(treeOf(again)), contentOf(before));
});

/** Pack names by class, as stored. */
async function packsByClass(repo: Repository): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  for (const o of await repo.backend.list("data/")) {
    const p = parsePackObjectName(o.name);
    assert.ok(p, `${o.name} is a pack`);
    const set = out.get(p.dataClass) ?? new Set<string>();
    set.add(p.name);
    out.set(p.dataClass, set);
  }
  return out;
}

async function manifestOf(repo: Repository, id: string): Promise<Manifest> {
  const s = await repo.readSnapshot(id);
  assert.ok("manifest" in s, `snapshot ${id} decodes`);
  return s.manifest;
}

test("verify --read-data passes on a clean repository and records a structure and a data verification on each snapshot", async (t) => {
  const dir = tempDir(t, "vault-maint-verify");
  const { repo } = await newRepo(dir);
  const s1 = await backupNode(repo, nodes.v1.nodeDir);
  const s2 = await backupNode(repo, nodes.v2.nodeDir);

  const { index } = await repo.loadIndex();
  const t0 = new Date().toISOString();
  const r = await verify(repo, { readData: true });
  assert.equal(r.ok, true, JSON.stringify(r.snapshots.map((s) => s.problems)));
  assert.deepEqual(r.repoProblems, []);
  assert.equal(r.packsRead, index.packs.size, "every pack is read");
  assert.equal(
    r.chunksRead,
    [...index.packs.values()].reduce((n, p) => n + p.entryCount, 0),
    "every chunk is checked",
  );
  assert.deepEqual(r.snapshots.map((s) => s.id).sort(), [s1.snapshotId, s2.snapshotId].sort());
  for (const s of r.snapshots) assert.deepEqual(s.levels, { structure: true, data: true });

  const recorded = await repo.readVerifications();
  for (const id of [s1.snapshotId, s2.snapshotId]) {
    const v = recorded.get(id);
    assert.equal(v?.structure?.ok, true);
    assert.equal(v?.data?.ok, true);
    assert.ok(v.data.time >= t0, "recorded with the time of the run");
    assert.equal(v.chain, undefined, "no chain check was asked for");
  }
});

test("verify --read-data finds a flipped bit in a pack, and restore then refuses the snapshot unless forced", async (t) => {
  const dir = tempDir(t, "vault-maint-bitflip");
  const { repo, root } = await newRepo(dir);
  const b = await backupNode(repo, nodes.v1.nodeDir);

  // Flip one bit inside the first blob of a ledger pack.
  const { index } = await repo.loadIndex();
  const pack = [...index.packs.values()].find((p) => p.dataClass === "ledger")!;
  const path = join(root, "data", "ledger", pack.name.slice(0, 2), pack.name);
  const bytes = readFileSync(path);
  bytes[Math.floor(index.entriesOf(pack.name)[0]!.length / 2)]! ^= 0x08;
  writeFileSync(path, bytes);

  const r = await verify(repo, { readData: true });
  assert.equal(r.ok, false);
  const v = r.snapshots[0]!;
  assert.deepEqual(v.levels, { structure: true, data: false });
  assert.ok(
    v.problems.some((p) => p.includes(pack.name) && /does not authenticate/.test(p)),
    v.problems.join("; "),
  );
  assert.equal((await repo.readVerifications()).get(b.snapshotId)?.data?.ok, false);

  const target = join(dir, "target");
  await assert.rejects(restore(repo, b.snapshotId, target), (err: unknown) => {
    assert.ok(err instanceof VaultError);
    assert.equal(err.code, VaultErrorCode.VerifyFailed);
    assert.match(err.message, /--force/);
    return true;
  });
  const forced = await restore(repo, b.snapshotId, target, { force: true });
  assert.ok(forced.warnings.some((w) => /FORCED/.test(w)));
  assert.ok(forced.warnings.some((w) => /left as zeros/.test(w)));
});

test("restore refuses a snapshot whose manifest signature does not verify, and verify reports it", async (t) => {
  const dir = tempDir(t, "vault-maint-forged");
  const { repo, root } = await newRepo(dir);
  const b = await backupNode(repo, nodes.v1.nodeDir);

  // Someone holding the data key (not the signing seed) raises the anchor and re-seals.
  const aad = Buffer.from("chainvault/snapshot/v1");
  const plain = open(repo.master.dataKey, readFileSync(join(root, "snapshots", b.snapshotId)), aad)!;
  const obj = JSON.parse(plain.toString("utf8")) as { manifest: Manifest; signature: string };
  obj.manifest.anchor = { ...obj.manifest.anchor, height: 999_999 };
  const forged = seal(repo.master.dataKey, Buffer.from(JSON.stringify(obj)), aad);
  const id = createHash("sha256").update(forged).digest("hex");
  await repo.backend.put(`snapshots/${id}`, forged);
  await repo.backend.delete(`snapshots/${b.snapshotId}`);

  const target = join(dir, "target");
  await assert.rejects(restore(repo, id, target), (err: unknown) => {
    assert.ok(err instanceof VaultError);
    assert.equal(err.code, VaultErrorCode.ObjectCorrupt);
    assert.match(err.message, /signature does not verify/);
    return true;
  });
  await assert.rejects(restore(repo, "latest", target), (err: unknown) => {
    assert.ok(err instanceof VaultError);
    assert.equal(err.code, VaultErrorCode.SnapshotMissing, "latest never picks an untrusted snapshot");
    return true;
  });
  const r = await verify(repo, {});
  assert.equal(r.ok, false);
  assert.match(r.snapshots[0]!.problems.join(";"), /signature does not verify/);
});

test("forget then prune removes the forgotten snapshots and their data, never rewrites a ledger pack, and the kept snapshot still restores and verifies", async (t) => {
  const dir = tempDir(t, "vault-maint-prune");
  const { repo, root } = await newRepo(dir);
  const s1 = await backupNode(repo, nodes.v1.nodeDir, { tags: ["hourly"] });
  const s2 = await backupNode(repo, nodes.v1.nodeDir, { tags: ["hourly"], force: true });
  const s3 = await backupNode(repo, nodes.v2.nodeDir, { tags: ["hourly"] });
  assert.ok((await verify(repo, {})).ok);

  const dry = await forget(repo, { last: 1 }, { dryRun: true });
  assert.deepEqual(dry.removed.sort(), [s1.snapshotId, s2.snapshotId].sort());
  assert.equal((await repo.listSnapshots()).length, 3, "a dry run removes nothing");

  const f = await forget(repo, { last: 1 });
  assert.deepEqual(f.removed.sort(), [s1.snapshotId, s2.snapshotId].sort());
  assert.deepEqual(
    (await repo.listSnapshots()).map((s) => s.id),
    [s3.snapshotId],
  );
  assert.deepEqual(await repo.backend.list(`verifications/${s1.snapshotId}`), []);

  const kept = await manifestOf(repo, s3.snapshotId);
  const keptChunks = new Set([...manifestChunks(kept)].map((c) => c.id));
  const { index: indexBefore } = await repo.loadIndex();
  const packsBefore = await packsByClass(repo);
  const dataBytesBefore = (await repo.backend.list("data/")).reduce((s, o) => s + o.sizeBytes, 0);
  const onlyForgotten = [...indexBefore.packs.values()]
    .flatMap((p) => indexBefore.entriesOf(p.name).map((e) => e.id.toString("hex")))
    .filter((id) => !keptChunks.has(id));
  assert.ok(onlyForgotten.length > 0, "the forgotten snapshots had data of their own");

  const withoutLocks = (m: Map<string, string>) => new Map([...m].filter(([p]) => !p.startsWith("locks")));
  const beforePrune = withoutLocks(repoFiles(root));
  const dryPrune = await prune(repo, { dryRun: true });
  assert.deepEqual(withoutLocks(repoFiles(root)), beforePrune, "a dry run changes nothing");
  const p = await prune(repo);
  assert.equal(p.packsDeleted, dryPrune.packsDeleted);
  assert.ok(p.packsDeleted + p.packsRepacked > 0, "packs of forgotten data were deleted or repacked");
  assert.ok(p.bytesFreed > 0);
  assert.equal(p.missingChunks, 0);

  // No ledger pack was rewritten: every ledger pack now stored was stored before.
  const packsAfter = await packsByClass(repo);
  const ledgerAfter = packsAfter.get("ledger") ?? new Set();
  for (const name of ledgerAfter)
    assert.ok(packsBefore.get("ledger")?.has(name), `ledger pack ${name} is an original`);
  assert.ok(ledgerAfter.size > 0);
  const dataBytesAfter = (await repo.backend.list("data/")).reduce((s, o) => s + o.sizeBytes, 0);
  assert.ok(dataBytesAfter < dataBytesBefore, `data went from ${dataBytesBefore} to ${dataBytesAfter} bytes`);

  // The forgotten data is gone, except chunks sharing a ledger pack with kept ones.
  const { index: indexAfter } = await repo.loadIndex();
  const stored = new Set((await repo.backend.list("data/")).map((o) => parsePackObjectName(o.name)!.name));
  assert.deepEqual(new Set(indexAfter.packs.keys()), stored, "the index names exactly the stored packs");
  let gone = 0;
  for (const id of onlyForgotten) {
    const loc = indexAfter.get(Buffer.from(id, "hex"));
    if (!loc) {
      gone++;
      continue;
    }
    assert.equal(
      loc.pack.dataClass,
      "ledger",
      `forgotten chunk ${id.slice(0, 12)} survives only in a ledger pack`,
    );
    assert.ok(
      indexAfter.entriesOf(loc.pack.name).some((e) => keptChunks.has(e.id.toString("hex"))),
      "and only because that pack also holds kept data",
    );
  }
  assert.ok(gone > 0, `${gone} of ${onlyForgotten.length} forgotten chunks are gone`);
  assert.ok(
    [...ledgerAfter].some((name) =>
      indexAfter.entriesOf(name).some((e) => !keptChunks.has(e.id.toString("hex"))),
    ),
    "a ledger pack holding forgotten chunks was kept whole rather than repacked",
  );
  for (const id of keptChunks)
    assert.ok(indexAfter.has(Buffer.from(id, "hex")), "every kept chunk is indexed");
  const names = async (prefix: string) => (await repo.backend.list(prefix)).map((o) => o.name).sort();
  assert.deepEqual(await names("verifications/"), await names(`verifications/${s3.snapshotId}/`));

  const v = await verify(repo, { readData: true });
  assert.equal(v.ok, true, JSON.stringify(v.snapshots.map((s) => s.problems)));
  const target = join(dir, "restored");
  await restore(repo, s3.snapshotId, target);
  assert.deepEqual(contentOf(treeOf(target)), contentOf(treeOf(nodes.v2.nodeDir)));
});

test("copy to a second repository with another password restores byte-identical, keeps the manifest, and a second copy skips it", async (t) => {
  const dir = tempDir(t, "vault-maint-copy");
  const node = nodes.v1;
  const { repo: from } = await newRepo(dir, "main");
  const { repo: to } = await newRepo(dir, "offsite", "an entirely different password");
  const b = await backupNode(from, node.nodeDir, { tags: ["daily"] });
  const nodeTree = contentOf(treeOf(node.nodeDir));

  const c = await copySnapshots(from, to);
  assert.equal(c.copied.length, 1);
  assert.deepEqual(c.skipped, []);
  const copied = c.copied[0]!;
  assert.equal(copied.from, b.snapshotId);

  const src = await manifestOf(from, b.snapshotId);
  const dst = await manifestOf(to, copied.to);
  assert.equal(dst.origin, b.snapshotId);
  for (const k of ["time", "host", "sourceId", "source", "tags", "anchor"] as const)
    assert.deepEqual(dst[k], src[k], k);
  // The destination has its own keys: nothing of the source's chunk ids carries over.
  const srcIds = new Set([...manifestChunks(src)].map((x) => x.id));
  assert.equal(
    [...manifestChunks(dst)].some((x) => srcIds.has(x.id)),
    false,
  );

  const target = join(dir, "restored");
  await restore(to, "latest", target);
  assert.deepEqual(contentOf(treeOf(target)), nodeTree);
  assert.ok((await verify(to, { readData: true })).ok);

  const again = await copySnapshots(from, to);
  assert.deepEqual(again, { copied: [], skipped: [b.snapshotId] });
  assert.equal((await to.listSnapshots()).length, 1);
});

test("chainvault repo init creates a repository that the password from CHAINVAULT_PASSWORD opens", async () => {
  const init = await steps.init;
  ok(init, "repo init");
  const out = JSON.parse(init.stdout) as { repo: string; id: string; keyId: string };
  assert.equal(out.repo, cliRepo);
  const repo = await Repository.open(new LocalBackend(cliRepo), PASSWORD);
  assert.equal(repo.config.id, out.id);
  assert.equal(repo.keyId, out.keyId);
});

test("chainvault backup --node stores a snapshot of the stopped node with its anchor", async () => {
  const r = await steps.backup;
  ok(r, "backup");
  const out = JSON.parse(r.stdout) as {
    snapshotId: string;
    live: boolean;
    anchor: { height: number };
    totalBytes: number;
    readBytes: number;
  };
  assert.match(out.snapshotId, /^[0-9a-f]{64}$/);
  assert.equal(out.live, false);
  assert.deepEqual(out.anchor, offlineAnchor(cliNode.nodeDir));
  assert.equal(out.anchor.height, cliNode.height);
  assert.equal(out.readBytes, out.totalBytes);
});

test("chainvault verify --read-data exits 0 on a clean repository", async () => {
  const r = await steps.verify;
  ok(r, "verify");
  const out = JSON.parse(r.stdout) as { ok: boolean; packsRead: number; snapshots: { levels: object }[] };
  assert.equal(out.ok, true);
  assert.ok(out.packsRead > 0);
  assert.deepEqual(out.snapshots[0]?.levels, { structure: true, data: true });
});

test("chainvault restore latest --target rebuilds the node byte-identical, even given the target with a trailing slash", async () => {
  const r = await steps.restore;
  ok(r, "restore");
  const out = JSON.parse(r.stdout) as { target: string; warnings: string[] };
  assert.equal(out.target, cliTarget);
  assert.deepEqual(out.warnings, []);
  assert.deepEqual(contentOf(treeOf(cliTarget)), contentOf(treeOf(cliNode.nodeDir)));
  assert.deepEqual(
    readdirSync(cliDir).filter((n) => n.includes("restored")),
    ["restored"],
    "no staging tree or journal is left beside the target",
  );
});

test("chainvault snapshots --json lists the snapshot with its tag, anchor and last verification", async () => {
  const r = await steps.snapshots;
  ok(r, "snapshots");
  const rows = JSON.parse(r.stdout) as {
    id: string;
    tags: string[];
    sourceId: string;
    components: string[];
    anchor: { height: number };
    verified: { level: string; ok: boolean } | null;
  }[];
  const saved = JSON.parse((await steps.backup).stdout) as { snapshotId: string };
  assert.equal(rows.length, 1);
  const row = rows[0]!;
  assert.equal(row.id, saved.snapshotId);
  assert.deepEqual(row.tags, ["manual"]);
  assert.equal(row.anchor.height, cliNode.height);
  assert.deepEqual(row.components, ["ledger", "state", "config", "keys", "logs"]);
  assert.deepEqual(row.verified && { level: row.verified.level, ok: row.verified.ok }, {
    level: "data",
    ok: true,
  });
});

test("chainvault with a wrong password exits with code 6, names the repository and CHAINVAULT_PASSWORD, never prints the password, and writes nothing", async () => {
  const { run, before, after } = await steps.wrong;
  assert.equal(run.code, ExitCode.BadPassword, run.stderr);
  assert.ok(run.stderr.includes(cliOtherRepo), run.stderr);
  assert.match(run.stderr, /CHAINVAULT_PASSWORD/);
  assert.doesNotMatch(run.stderr, /unexpected error|at .*\.ts:\d+/, "an expected error prints no stack");
  assert.equal(`${run.stdout}${run.stderr}`.includes(WRONG), false, "the password is never printed");
  assert.deepEqual(after, before, "the repository is unchanged");
});

test("a backup of a running node whose repository does not open never asks the node for a checkpoint", async () => {
  // A node's HTTP API on loopback that records what it is asked; a real node would make a
  // checkpoint (hard links, a state copy) on POST /admin/checkpoint.
  const asked: string[] = [];
  const server = createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`);
    res.writeHead(503).end();
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address() as { port: number };
  try {
    const refused = new VaultError(
      { code: VaultErrorCode.WrongPassword },
      "the password does not open any key file",
    );
    await assert.rejects(
      backupNode(Promise.reject(refused), `http://127.0.0.1:${port}`, { adminToken: "t" }),
      (err) => err === refused,
    );
    assert.deepEqual(asked, [], "the node was asked for nothing");
  } finally {
    server.close();
  }
});

test("chainvault --version prints the package's version and exits 0", async () => {
  const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
  const r = await cli(["--version"]);
  ok(r, "--version");
  assert.equal(r.stdout.trim(), `chainvault ${version}`);
});
