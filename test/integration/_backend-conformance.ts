/**
 * The contract every {@link Backend} must meet, as node:test tests. A backend's test file
 * calls {@link runBackendConformance} with a factory that makes a fresh, empty repository.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import type { Backend } from "../../src/vault/backend.js";
import { VaultError, VaultErrorCode } from "../../src/vault/errors.js";

/** A fresh, empty repository on the backend under test, and how to dispose of it. */
export interface BackendFixture {
  backend: Backend;
  cleanup(): Promise<void>;
}

// 20 MiB: larger than any pack file, so a whole-object read of the largest object is covered.
const LARGE_SIZE_BYTES = 20 * 1024 * 1024;
// 1,200: more than the 1,000 keys S3 returns in one ListObjectsV2 page.
const LIST_COUNT = 1200;
// 16 puts in flight while filling the 1,200 objects: fast, and within any store's connection limit.
const FILL_CONCURRENCY = 16;
// 20 writers at once, as a backup's upload workers do.
const CONCURRENT_PUTS = 20;

function isVaultError(code: VaultErrorCode): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof VaultError, `expected a VaultError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

/** A content-addressed name like the repository's: `data/ledger/ab/abcd…`. */
function dataName(cls: string, id: string): string {
  return `data/${cls}/${id.slice(0, 2)}/${id}`;
}

async function withFixture(make: () => Promise<BackendFixture>, fn: (b: Backend) => Promise<void>) {
  const { backend, cleanup } = await make();
  try {
    await fn(backend);
  } finally {
    try {
      await backend.close();
    } finally {
      await cleanup();
    }
  }
}

async function inBatches<T>(items: T[], size: number, fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

function sortedNames(infos: { name: string }[]): string[] {
  return infos.map((o) => o.name).sort();
}

/**
 * Registers the Backend conformance tests under `describe(name)`.
 *
 * @example
 * runBackendConformance("LocalBackend", async () => {
 *   const dir = await mkdtemp(join(tmpdir(), "repo-"));
 *   return { backend: new LocalBackend(dir), cleanup: () => rm(dir, { recursive: true }) };
 * });
 */
export function runBackendConformance(name: string, make: () => Promise<BackendFixture>): void {
  describe(`${name} conformance`, () => {
    test("get returns exactly what put stored: an empty object, 1 byte and 20 MiB", () =>
      withFixture(make, async (b) => {
        const large = randomBytes(LARGE_SIZE_BYTES);
        await b.put("config", new Uint8Array(0));
        await b.put("keys/one", Uint8Array.of(0x5a));
        await b.put("index/large", large);
        assert.equal((await b.get("config")).length, 0);
        assert.deepEqual(await b.get("keys/one"), Buffer.of(0x5a));
        const back = await b.get("index/large");
        assert.equal(back.length, LARGE_SIZE_BYTES);
        assert.ok(back.equals(large), "the 20 MiB object came back different");
      }));

    test("getRange returns the bytes at the middle and at the very end of an object", () =>
      withFixture(make, async (b) => {
        const data = randomBytes(4096);
        await b.put("index/r", data);
        assert.deepEqual(await b.getRange("index/r", 1000, 500), data.subarray(1000, 1500));
        assert.deepEqual(await b.getRange("index/r", 4000, 96), data.subarray(4000));
        assert.deepEqual(await b.getRange("index/r", 0, 4096), data);
        assert.equal((await b.getRange("index/r", 10, 0)).length, 0);
      }));

    test("getRange that runs past the end of an object rejects with ObjectCorrupt", () =>
      withFixture(make, async (b) => {
        await b.put("index/r", randomBytes(100));
        await assert.rejects(b.getRange("index/r", 50, 51), isVaultError(VaultErrorCode.ObjectCorrupt));
        await assert.rejects(b.getRange("index/r", 100, 1), isVaultError(VaultErrorCode.ObjectCorrupt));
        await assert.rejects(b.getRange("index/r", 5000, 10), isVaultError(VaultErrorCode.ObjectCorrupt));
      }));

    test("get and getRange of a missing object reject with ObjectMissing", () =>
      withFixture(make, async (b) => {
        await assert.rejects(b.get("snapshots/none"), isVaultError(VaultErrorCode.ObjectMissing));
        await assert.rejects(b.getRange("snapshots/none", 0, 10), isVaultError(VaultErrorCode.ObjectMissing));
        await assert.rejects(b.getRange("snapshots/none", 0, 0), isVaultError(VaultErrorCode.ObjectMissing));
        await assert.rejects(b.get("snapshots/none"), (err: unknown) => {
          assert.ok(err instanceof VaultError);
          assert.equal(err.detail.name, "snapshots/none");
          assert.match(err.message, /snapshots\/none/);
          return true;
        });
      }));

    test("stat gives the size of a present object and undefined for a missing one", () =>
      withFixture(make, async (b) => {
        await b.put("snapshots/s1", randomBytes(123));
        await b.put("snapshots/empty", new Uint8Array(0));
        assert.deepEqual(await b.stat("snapshots/s1"), { name: "snapshots/s1", sizeBytes: 123 });
        assert.deepEqual(await b.stat("snapshots/empty"), { name: "snapshots/empty", sizeBytes: 0 });
        assert.equal(await b.stat("snapshots/s2"), undefined);
        // A folder that holds objects is not itself an object.
        assert.equal(await b.stat("snapshots"), undefined);
      }));

    test("list returns the full names and sizes of the objects under a folder and nothing outside it", () =>
      withFixture(make, async (b) => {
        const ids = ["abcd01", "ab0f02", "cd0103"].map((s) => s.padEnd(64, "0"));
        const ledger = ids.map((id) => dataName("ledger", id));
        const state = dataName("state", ids[0]!);
        await Promise.all([...ledger, state].map((n, i) => b.put(n, randomBytes(i + 1))));
        await b.put("data/ledger-old/x", randomBytes(1));
        await b.put("snapshots/s1", randomBytes(7));

        const listed = await b.list("data/ledger/");
        assert.deepEqual(sortedNames(listed), [...ledger].sort());
        for (const o of listed) assert.equal(o.sizeBytes, ledger.indexOf(o.name) + 1);
        // Without the trailing slash the prefix still means the folder, not `data/ledger-old`.
        assert.deepEqual(sortedNames(await b.list("data/ledger")), [...ledger].sort());
        assert.deepEqual(sortedNames(await b.list("data/ledger/ab/")), [ledger[0], ledger[1]].sort());
        assert.deepEqual(sortedNames(await b.list("data/")), [...ledger, "data/ledger-old/x", state].sort());
        assert.deepEqual(await b.list("snapshots/"), [{ name: "snapshots/s1", sizeBytes: 7 }]);
        assert.equal((await b.list("")).length, 6);
        assert.deepEqual(await b.list("locks/"), []);
      }));

    test(`list returns all of a folder's ${LIST_COUNT} objects, more than one S3 page`, () =>
      withFixture(make, async (b) => {
        const names = Array.from({ length: LIST_COUNT }, (_, i) =>
          dataName("ledger", i.toString(16).padStart(4, "0").padEnd(64, "e")),
        );
        await inBatches(names, FILL_CONCURRENCY, (n) => b.put(n, Uint8Array.of(1, 2)));
        await b.put("index/outside", Uint8Array.of(1));
        const listed = await b.list("data/ledger/");
        assert.equal(listed.length, LIST_COUNT);
        assert.deepEqual(sortedNames(listed), [...names].sort());
        assert.ok(listed.every((o) => o.sizeBytes === 2));
      }));

    test("delete removes an object, and deleting a missing object succeeds", () =>
      withFixture(make, async (b) => {
        await b.put("locks/l1", randomBytes(10));
        await b.delete("locks/l1");
        assert.equal(await b.stat("locks/l1"), undefined);
        await assert.rejects(b.get("locks/l1"), isVaultError(VaultErrorCode.ObjectMissing));
        await b.delete("locks/l1");
        await b.delete("locks/never-existed");
        assert.deepEqual(await b.list("locks/"), []);
      }));

    test("put over an existing object replaces its content and size", () =>
      withFixture(make, async (b) => {
        await b.put("config", randomBytes(1000));
        const second = randomBytes(10);
        await b.put("config", second);
        assert.deepEqual(await b.get("config"), second);
        assert.deepEqual(await b.stat("config"), { name: "config", sizeBytes: 10 });
        assert.deepEqual(await b.list(""), [{ name: "config", sizeBytes: 10 }]);
      }));

    test("invalid object names are rejected with TypeError before storage is touched", () =>
      withFixture(make, async (b) => {
        const bad = ["../x", "/abs", "a//b", "", "a/../b", "a/./b", ".hidden", "a/", "a\\b", "a b"];
        for (const n of bad) {
          await assert.rejects(b.put(n, Uint8Array.of(1)), TypeError, `put ${JSON.stringify(n)}`);
          await assert.rejects(b.get(n), TypeError, `get ${JSON.stringify(n)}`);
          await assert.rejects(b.getRange(n, 0, 1), TypeError, `getRange ${JSON.stringify(n)}`);
          await assert.rejects(b.stat(n), TypeError, `stat ${JSON.stringify(n)}`);
          await assert.rejects(b.delete(n), TypeError, `delete ${JSON.stringify(n)}`);
        }
        for (const p of ["../", "/abs/", "a//b/"])
          await assert.rejects(b.list(p), TypeError, `list ${JSON.stringify(p)}`);
        assert.deepEqual(await b.list(""), [], "a rejected put stored something");
      }));

    test(`${CONCURRENT_PUTS} concurrent puts of different objects all land intact`, () =>
      withFixture(make, async (b) => {
        const objects = Array.from({ length: CONCURRENT_PUTS }, (_, i) => ({
          name: `index/${String(i).padStart(2, "0")}`,
          data: randomBytes(64 * 1024 + i),
        }));
        await Promise.all(objects.map((o) => b.put(o.name, o.data)));
        for (const o of objects) assert.ok((await b.get(o.name)).equals(o.data), `${o.name} differs`);
        assert.equal((await b.list("index/")).length, CONCURRENT_PUTS);
      }));
  });
}
