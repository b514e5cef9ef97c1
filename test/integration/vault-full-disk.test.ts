// Goal: a full disk, the repository's or a restore target's, gives a clear error with its own
// exit code (7) and leaves nothing half-written; freeing space and running the command again
// succeeds. Method: real tmpfs file systems of a few hundred KiB (or a few inodes), mounted in
// a user and mount namespace of the test's own (`unshare`, no privileges needed), with the CLI
// run from the sources inside it; each step's exit code and output land in the test's own
// directory, outside the namespace, for the assertions.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ExitCode } from "../../src/cli/exit-codes.js";
import { backupNode } from "../../src/recovery/node-backup.js";
import { LocalBackend } from "../../src/vault/backends/local.js";
import { Repository } from "../../src/vault/repository.js";
import { makeNode, type NodeFixture, newRepo, TEST_KDF, treeOf } from "./_vault-fixture.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PASSWORD = "full disk test passphrase";

let dir: string;
let node: NodeFixture;
// A repository holding no snapshot, to copy onto a small disk (default chunks and packs, so
// every class's pack is still open when the first write fails; a cheap key derivation); and
// one on the ordinary disk holding a backup of the node.
let emptyRepo: string;
let fullRepo: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "chainvault-full-disk-"));
  node = await makeNode(dir);
  emptyRepo = join(dir, "empty-repo");
  await Repository.init(new LocalBackend(emptyRepo), PASSWORD, { kdf: TEST_KDF });
  const full = await newRepo(dir, "repo", PASSWORD);
  fullRepo = full.root;
  await backupNode(full.repo, node.nodeDir);
});
after(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Runs a bash script in a new user and mount namespace, with $OUT (a fresh directory on the
 * ordinary disk) and CHAINVAULT_PASSWORD set and `cli` running the CLI from the sources; `step NAME CMD...` runs a command with its
 * stdout and stderr in $OUT/NAME.out and .err and its exit code in $OUT/NAME.code.
 */
async function inNamespace(name: string, script: string): Promise<(file: string) => string> {
  const out = join(dir, name);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OUT: out,
    NODE: process.execPath,
    CHAINVAULT_PASSWORD: PASSWORD,
  };
  for (const k of Object.keys(env))
    if (k.startsWith("CHAINVAULT_") && k !== "CHAINVAULT_PASSWORD") delete env[k];
  const prelude = `set -u; mkdir -p "$OUT"; cli() { "$NODE" --import tsx src/cli/main.ts "$@"; }; step() { local n=$1; shift; "$@" > "$OUT/$n.out" 2> "$OUT/$n.err"; echo $? > "$OUT/$n.code"; }\n`;
  const child = spawn("unshare", ["--user", "--map-root-user", "--mount", "bash", "-c", prelude + script], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  assert.equal(code, 0, `the namespace script failed (${code}): ${stderr}`);
  return (file) => readFileSync(join(out, file), "utf8");
}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

test("a backup into a repository whose disk fills up exits 7 naming the repository, leaves no temporary object and no snapshot; with space freed it succeeds", async () => {
  const read = await inNamespace(
    "backup",
    `M="$OUT/mnt"; mkdir -p "$M"; mount -t tmpfs -o size=256k none "$M"
     cp -a "${emptyRepo}" "$M/repo"
     step backup1 cli backup --repo "$M/repo" --node "${node.nodeDir}"
     find "$M/repo" -name '*.tmp-*' > "$OUT/temporaries"
     step snapshots1 cli snapshots --repo "$M/repo" --json
     step verify1 cli verify --repo "$M/repo" --read-data
     mount -o remount,size=16m "$M"
     step backup2 cli backup --repo "$M/repo" --node "${node.nodeDir}" --json
     step verify2 cli verify --repo "$M/repo" --read-data`,
  );
  assert.equal(Number(read("backup1.code")), ExitCode.NoSpace, read("backup1.err"));
  assert.match(read("backup1.err"), /the disk is full; free space and run the command again/);
  assert.match(read("backup1.err"), /mnt\/repo/);
  assert.equal(read("temporaries"), "", "no temporary pack is left behind");
  assert.equal(Number(read("snapshots1.code")), ExitCode.Ok, read("snapshots1.err"));
  assert.deepEqual(JSON.parse(read("snapshots1.out")), []);
  assert.equal(
    Number(read("verify1.code")),
    ExitCode.Ok,
    `the repository still verifies: ${read("verify1.err")}`,
  );
  assert.equal(Number(read("backup2.code")), ExitCode.Ok, read("backup2.err"));
  assert.equal(Number(read("verify2.code")), ExitCode.Ok, read("verify2.err"));
});

test("a restore onto a disk too small for it exits 7 before writing anything, saying how much it needs and how much is free", async () => {
  const read = await inNamespace(
    "restore-small",
    `T="$OUT/tgt"; mkdir -p "$T"; mount -t tmpfs -o size=256k none "$T"
     mkdir "$T/node"; echo old > "$T/node/marker"
     step restore cli restore --repo "${fullRepo}" latest --target "$T/node"
     ls -A "$T" > "$OUT/listing"; cat "$T/node/marker" > "$OUT/marker"`,
  );
  assert.equal(Number(read("restore.code")), ExitCode.NoSpace, read("restore.err"));
  assert.match(
    read("restore.err"),
    /its files need [\d.]+ MiB and the file system holding .*tgt has 0\.\d MiB free/,
  );
  assert.match(read("restore.err"), /Nothing was written/);
  assert.equal(read("listing"), "node\n", "no staging directory was made");
  assert.equal(read("marker"), "old\n");
});

test("a restore whose disk fills up midway (no inode left) exits 7, keeps the target as it was, and resumes once space is freed", async () => {
  const read = await inNamespace(
    "restore-inodes",
    `T="$OUT/tgt"; mkdir -p "$T"; mount -t tmpfs -o size=64m,nr_inodes=6 none "$T"
     mkdir "$T/node"; echo old > "$T/node/marker"
     step restore1 cli restore --repo "${fullRepo}" latest --target "$T/node"
     ls -A "$T" > "$OUT/listing1"; cat "$T/node/marker" > "$OUT/marker1"
     mount -o remount,nr_inodes=10000 "$T"
     step restore2 cli restore --repo "${fullRepo}" latest --target "$T/node"
     cp -a "$T/node" "$OUT/restored"`,
  );
  assert.equal(Number(read("restore1.code")), ExitCode.NoSpace, read("restore1.err"));
  assert.match(read("restore1.err"), /is full \(ENOSPC/);
  assert.match(
    read("restore1.err"),
    /tgt\/node is unchanged\. Free space and run the restore again to resume/,
  );
  assert.equal(read("marker1"), "old\n");
  const staging = read("listing1").trim().split("\n");
  assert.equal(staging.length, 2, `the target and its staging directory: ${staging}`);
  assert.equal(staging[0], "node");
  assert.match(staging[1]!, /^node\.restore-/);
  assert.equal(Number(read("restore2.code")), ExitCode.Ok, read("restore2.err"));
  const restored = join(dir, "restore-inodes", "restored");
  const files = [...treeOf(node.nodeDir)].filter(([, e]) => e.type === "file").map(([p]) => p);
  assert.ok(files.length > 3);
  for (const p of files) assert.equal(sha256(join(restored, p)), sha256(join(node.nodeDir, p)), p);
  assert.ok(readdirSync(restored).includes("marker"), "a file the snapshot does not name stays");
});
