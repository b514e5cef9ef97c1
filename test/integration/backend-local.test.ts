// Goal: prove LocalBackend meets the Backend contract and that failed or abandoned writes leave no temporary files behind; method: the shared conformance suite against a fresh temp directory per test, then real failing puts and planted `*.tmp-*` leftovers in a temp directory.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { LocalBackend } from "../../src/vault/backends/local.js";
import { VaultError, VaultErrorCode } from "../../src/vault/errors.js";
import { runBackendConformance } from "./_backend-conformance.js";

async function tempRepo(): Promise<string> {
  return mkdtemp(join(tmpdir(), "chainvault-local-backend-"));
}

runBackendConformance("LocalBackend", async () => {
  const dir = await tempRepo();
  return { backend: new LocalBackend(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

async function repoFor(t: TestContext): Promise<{ dir: string; backend: LocalBackend }> {
  const dir = await tempRepo();
  const backend = new LocalBackend(dir);
  t.after(async () => {
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, backend };
}

/** Every file under `dir`, relative to it, with `/` separators. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

test("a put whose target name is an existing directory fails with BackendFailed and leaves no temporary file", async (t) => {
  const { dir, backend } = await repoFor(t);
  await backend.put("data/ledger/kept", Uint8Array.of(1));
  // Renaming a file onto a directory fails (EISDIR) after the temporary file was written and fsynced.
  await mkdir(join(dir, "data", "ledger", "taken"), { recursive: true });
  await writeFile(join(dir, "data", "ledger", "taken", "inner"), "x");

  await assert.rejects(backend.put("data/ledger/taken", Uint8Array.of(1, 2, 3)), (err: unknown) => {
    assert.ok(err instanceof VaultError);
    assert.equal(err.code, VaultErrorCode.BackendFailed);
    assert.match(err.message, /data\/ledger\/taken/);
    assert.ok(err.message.includes(dir), err.message);
    return true;
  });
  assert.deepEqual(await filesUnder(dir), ["data/ledger/kept", "data/ledger/taken/inner"]);
  assert.ok((await stat(join(dir, "data", "ledger", "taken"))).isDirectory());
});

test("a put under a name whose folder is a file fails with BackendFailed and leaves no temporary file", async (t) => {
  const { dir, backend } = await repoFor(t);
  await backend.put("snapshots", Uint8Array.of(1));
  await assert.rejects(backend.put("snapshots/s1", Uint8Array.of(2)), (err: unknown) => {
    assert.ok(err instanceof VaultError);
    assert.equal(err.code, VaultErrorCode.BackendFailed);
    return true;
  });
  assert.deepEqual(await filesUnder(dir), ["snapshots"]);
});

test("removeStaleTemporaries deletes *.tmp-* leftovers at any depth and keeps every object", async (t) => {
  const { dir, backend } = await repoFor(t);
  await backend.put("config", Uint8Array.of(1));
  await backend.put("data/ledger/ab/abcd", Uint8Array.of(2));
  await writeFile(join(dir, "config.tmp-4242-deadbeef"), "partial");
  await writeFile(join(dir, "data", "ledger", "ab", "abcd.tmp-1-00ff00ff"), "partial");
  await mkdir(join(dir, "snapshots"));
  await writeFile(join(dir, "snapshots", "s1.tmp-7-0a0b0c0d"), "");

  // list never shows a temporary file, even before the cleanup.
  assert.deepEqual((await backend.list("")).map((o) => o.name).sort(), ["config", "data/ledger/ab/abcd"]);
  assert.equal(await backend.removeStaleTemporaries(), 3);
  assert.deepEqual(await filesUnder(dir), ["config", "data/ledger/ab/abcd"]);
  assert.deepEqual(await backend.get("data/ledger/ab/abcd"), Buffer.of(2));
  assert.equal(await backend.removeStaleTemporaries(), 0);
});
