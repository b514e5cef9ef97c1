// Goal: prove what decides who may open and act on a repository works: a wrong password is refused with a clear, coded error that writes nothing; passwords can be added, listed and removed without losing access; locks let backups run side by side, keep prune out while another process works, and never let a lock of a dead or long-silent process block anyone; method: LocalBackend repositories in a temp directory holding real backups, opened with right, wrong and added passwords (every repository file's size, mtime and inode compared before and after), two real backups started at once, and lock objects in the format a real RepoLock writes, held for live and exited child processes and for another host.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { LocalBackend } from "../../src/vault/backends/local.js";
import { backup } from "../../src/vault/backup.js";
import { VaultError, VaultErrorCode } from "../../src/vault/errors.js";
import { LOCK_STALE_MS, listLocks, RepoLock } from "../../src/vault/lock.js";
import { prune } from "../../src/vault/prune.js";
import { Repository } from "../../src/vault/repository.js";
import { restore } from "../../src/vault/restore.js";
import { verify } from "../../src/vault/verify.js";
import { tempDir } from "./_chain-fixture.js";
import { contentOf, makeFiles, newRepo, repoFiles, TEST_KDF, treeOf } from "./_vault-fixture.js";

// Passwords and key files.

function isVault(code: VaultErrorCode, check?: (e: VaultError) => void) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof VaultError, String(err));
    assert.equal(err.code, code, err.message);
    check?.(err);
    return true;
  };
}

async function repoWithBackup(dir: string) {
  const r = await newRepo(dir);
  const files = makeFiles(dir, { "a.bin": 50_000, "sub/b.bin": 120_000 });
  const b = await backup(r.repo, files.source, { tags: ["manual"] });
  return { ...r, files, snapshotId: b.snapshotId };
}

test("a wrong password is refused with VAULT_WRONG_PASSWORD naming the repository, and writes nothing", async (t) => {
  const dir = tempDir(t, "vault-keys-wrong");
  const { root } = await repoWithBackup(dir);
  const before = repoFiles(root);
  assert.ok(
    [...before.keys()].some((p) => p.startsWith("data/")),
    "the repository holds data",
  );

  const wrong = "not-the-password-42";
  await assert.rejects(
    Repository.open(new LocalBackend(root), wrong),
    isVault(VaultErrorCode.WrongPassword, (e) => {
      assert.ok(e.message.includes(root), "the message names the repository");
      assert.match(e.message, /CHAINVAULT_PASSWORD/);
      assert.equal(e.message.includes(wrong), false, "the message never shows the password");
      assert.equal(JSON.stringify(e.detail).includes(wrong), false, "nor does the payload");
      assert.equal(e.detail.tried, 1);
    }),
  );
  assert.deepEqual(repoFiles(root), before, "no object was written, changed or removed");
});

test("opening a directory without a repository says so instead of blaming the password", async (t) => {
  const dir = tempDir(t, "vault-keys-missing");
  await assert.rejects(
    Repository.open(new LocalBackend(join(dir, "nothing-here")), "pw"),
    isVault(VaultErrorCode.RepoMissing, (e) => assert.match(e.message, /repo init/)),
  );
  const { root } = await newRepo(dir);
  await assert.rejects(
    Repository.init(new LocalBackend(root), "pw", { kdf: TEST_KDF }),
    isVault(VaultErrorCode.RepoExists),
  );
});

test("an added password opens the same repository and its snapshots, and both keys are listed", async (t) => {
  const dir = tempDir(t, "vault-keys-add");
  const { repo, root, files, snapshotId } = await repoWithBackup(dir);
  const kf = await repo.addKey("second password", "ops laptop", TEST_KDF);
  assert.equal(kf.label, "ops laptop");

  const keys = await repo.listKeys();
  assert.deepEqual(keys.map((k) => k.id).sort(), [repo.keyId, kf.id].sort());
  for (const k of keys) assert.ok(!("damaged" in k));

  const second = await Repository.open(new LocalBackend(root), "second password");
  assert.equal(second.keyId, kf.id);
  assert.equal(second.config.id, repo.config.id);
  assert.deepEqual(
    (await second.listSnapshots()).map((s) => s.id),
    [snapshotId],
  );
  const target = join(dir, "restored");
  await restore(second, snapshotId, target);
  assert.deepEqual(contentOf(treeOf(target)), contentOf(treeOf(files.dir)));
});

test("the key in use cannot be removed; another can, and its password then no longer opens", async (t) => {
  const dir = tempDir(t, "vault-keys-remove");
  const { repo, root } = await repoWithBackup(dir);
  const kf = await repo.addKey("second password", "ops", TEST_KDF);

  await assert.rejects(
    repo.removeKey(repo.keyId),
    isVault(VaultErrorCode.BadInput, (e) => assert.match(e.message, /opened the repository with/)),
  );
  await assert.rejects(repo.removeKey("0123456789abcdef"), isVault(VaultErrorCode.BadInput));
  assert.equal((await repo.listKeys()).length, 2, "a refused removal removes nothing");

  const second = await Repository.open(new LocalBackend(root), "second password");
  await second.removeKey(repo.keyId);
  assert.deepEqual(
    (await second.listKeys()).map((k) => k.id),
    [kf.id],
  );
  await assert.rejects(
    Repository.open(new LocalBackend(root), "correct horse battery staple"),
    isVault(VaultErrorCode.WrongPassword),
  );
  assert.equal((await Repository.open(new LocalBackend(root), "second password")).keyId, kf.id);
});

test("a damaged key file is reported as damage, and another key file still opens the repository", async (t) => {
  const dir = tempDir(t, "vault-keys-damaged");
  const { repo, root } = await repoWithBackup(dir);
  const kf = await repo.addKey("second password", "ops", TEST_KDF);
  writeFileSync(join(root, "keys", repo.keyId), "garbage\n");

  // The intact key still opens; the damaged one is listed as damaged.
  const second = await Repository.open(new LocalBackend(root), "second password");
  const listed = await second.listKeys();
  assert.deepEqual(
    listed.find((k) => k.id === repo.keyId),
    { id: repo.keyId, damaged: true },
  );

  // With every key file damaged the error says so, rather than blaming the password.
  writeFileSync(join(root, "keys", kf.id), "garbage too\n");
  assert.equal(readdirSync(join(root, "keys")).length, 2);
  await assert.rejects(
    Repository.open(new LocalBackend(root), "second password"),
    isVault(VaultErrorCode.ObjectCorrupt, (e) => assert.match(e.message, /every key file is damaged/)),
  );
});

// Locks.

/**
 * Writes a lock object as RepoLock writes it (copied from a real one taken in a scratch
 * backend beside the repository), with some fields changed.
 */
async function writeLockAs(
  repo: Repository,
  fields: { pid?: number; host?: string; refreshedAt?: number; op?: string; exclusive?: boolean },
): Promise<string> {
  const scratch = new LocalBackend(`${repo.backend.location}-lock-template`);
  const real = await RepoLock.acquire(scratch, { exclusive: false, op: "backup" });
  const body = JSON.parse((await scratch.get(real.name)).toString("utf8")) as Record<string, unknown>;
  await real.release();
  const name = "locks/0123456789abcdef0123456789abcdef";
  await repo.backend.put(name, Buffer.from(JSON.stringify({ ...body, ...fields })));
  return name;
}

/** A child process that stays alive until killed. */
async function liveChild(): Promise<{ pid: number; kill: () => Promise<void> }> {
  const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 60_000)"], { stdio: "ignore" });
  await once(child, "spawn");
  return {
    pid: child.pid!,
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** The pid of a child process that has already exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await once(child, "exit");
  return child.pid!;
}

function isLocked(check?: (e: VaultError) => void) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof VaultError, String(err));
    assert.equal(err.code, VaultErrorCode.Locked, err.message);
    check?.(err);
    return true;
  };
}

test("two backups running at once both succeed, and the repository then verifies, prunes and restores both", async (t) => {
  const dir = tempDir(t, "vault-locks-two");
  const { repo } = await newRepo(dir);
  const a = makeFiles(join(dir, "a"), { "one.bin": 300_000, "two.bin": 200_000 });
  const b = makeFiles(join(dir, "b"), { "three.bin": 250_000 });
  // Both sources hold one identical file: the two writers race to store its chunks.
  const shared = makeFiles(join(dir, "s"), { "same.bin": 400_000 });
  for (const src of [a, b]) {
    src.source.components.push({ ...shared.source.components[0]!, name: "shared" });
    src.source.sourceId = src.dir;
  }

  const [ra, rb] = await Promise.all([backup(repo, a.source), backup(repo, b.source)]);
  assert.notEqual(ra.snapshotId, rb.snapshotId);
  assert.deepEqual(await repo.backend.list("locks/"), [], "both locks were released");
  assert.equal((await repo.listSnapshots()).length, 2);

  const v = await verify(repo, { readData: true });
  assert.equal(v.ok, true, JSON.stringify(v.snapshots.map((s) => s.problems)));
  // A prune after the race keeps everything both snapshots need.
  const p = await prune(repo);
  assert.equal(p.missingChunks, 0);
  for (const [r, src] of [
    [ra, a],
    [rb, b],
  ] as const) {
    const target = join(dir, `restored-${r.snapshotId.slice(0, 8)}`);
    await restore(repo, r.snapshotId, target);
    const expected = new Map([...contentOf(treeOf(src.dir)), ...contentOf(treeOf(shared.dir))]);
    assert.deepEqual(contentOf(treeOf(target)), expected);
  }
});

test("prune fails with VAULT_LOCKED while another live process holds a shared lock, and proceeds once that process is gone", async (t) => {
  const dir = tempDir(t, "vault-locks-prune");
  const { repo } = await newRepo(dir);
  const files = makeFiles(dir, { "a.bin": 100_000 });
  const child = await liveChild();
  t.after(() => child.kill());
  const name = await writeLockAs(repo, { pid: child.pid, op: "backup", exclusive: false });
  assert.deepEqual(
    (await listLocks(repo.backend)).map((l) => [l.name, l.pid, l.stale]),
    [[name, child.pid, false]],
  );

  await assert.rejects(
    prune(repo),
    isLocked((e) => {
      assert.match(e.message, new RegExp(`backup of process ${child.pid} on ${hostname()}`));
      assert.ok(e.message.includes(repo.backend.location));
    }),
  );
  // A shared lock does not keep out other shared work: a backup runs meanwhile.
  const b = await backup(repo, files.source);
  assert.ok(b.snapshotId);
  assert.deepEqual(
    (await repo.backend.list("locks/")).map((o) => o.name),
    [name],
    "the live process's lock is left alone",
  );

  // The holder dies without releasing its lock: the next prune removes it and runs.
  await child.kill();
  const p = await prune(repo);
  assert.equal(p.missingChunks, 0);
  assert.deepEqual(await repo.backend.list("locks/"), []);
});

test("a lock left by a process that has exited does not block an exclusive operation", async (t) => {
  const dir = tempDir(t, "vault-locks-dead");
  const { repo } = await newRepo(dir);
  const pid = await deadPid();
  await writeLockAs(repo, { pid, op: "prune", exclusive: true });
  assert.deepEqual(
    (await listLocks(repo.backend)).map((l) => [l.pid, l.stale]),
    [[pid, true]],
  );
  await prune(repo);
  const files = makeFiles(dir, { "a.bin": 50_000 });
  await backup(repo, files.source);
  assert.deepEqual(await repo.backend.list("locks/"), [], "the dead process's lock was removed");
});

test("a lock of another host blocks while it is refreshed, and is taken as stale once silent for longer than the limit", async (t) => {
  const dir = tempDir(t, "vault-locks-host");
  const { repo } = await newRepo(dir);
  // The pid means nothing on another host: only the refresh time tells whether it lives.
  await writeLockAs(repo, { host: "some-other-host", pid: 1, exclusive: true, op: "prune" });
  const files = makeFiles(dir, { "a.bin": 50_000 });
  await assert.rejects(
    backup(repo, files.source),
    isLocked((e) => assert.match(e.message, /exclusive prune/)),
  );

  await writeLockAs(repo, {
    host: "some-other-host",
    pid: 1,
    exclusive: true,
    op: "prune",
    refreshedAt: Date.now() - LOCK_STALE_MS - 60_000,
  });
  const b = await backup(repo, files.source);
  assert.ok(b.snapshotId);
  assert.deepEqual(await repo.backend.list("locks/"), []);
});
