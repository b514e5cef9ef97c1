// Goal: prove the index does not have to sit whole in memory: past its bound it moves the chunks to a temporary database, answers every lookup as before, and a repository used that way backs up (deduplicating), verifies, restores byte for byte and prunes; method: a ChunkIndex fed 200,000 synthetic chunks with a bound of 1,000 (lookups, per-pack lists, an index object written back from it, and the heap it keeps after a full GC set against the same chunks held in memory), then real backups, verify --read-data, restore, forget and prune of a LocalBackend repository with CHAINVAULT_INDEX_MEMORY_ENTRIES=0, compared with the same steps in memory.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { LocalBackend } from "../../src/vault/backends/local.js";
import { backup } from "../../src/vault/backup.js";
import { ChunkIndex, decodeIndex, encodeIndex, type PackInfo } from "../../src/vault/chunk-index.js";
import { forget } from "../../src/vault/forget.js";
import type { PackEntry } from "../../src/vault/pack.js";
import { prune } from "../../src/vault/prune.js";
import { Repository } from "../../src/vault/repository.js";
import { restore } from "../../src/vault/restore.js";
import { verify } from "../../src/vault/verify.js";
import { tempDir } from "./_chain-fixture.js";
import { contentOf, makeFiles, newRepo, treeOf } from "./_vault-fixture.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const PACKS = 200;
const PER_PACK = 1000;

/** Chunk j of pack i: a deterministic id, so lookups can be checked without keeping them. */
function idOf(i: number, j: number): Buffer {
  return createHash("sha256").update(`${i}/${j}`).digest();
}
function packName(i: number): string {
  return createHash("sha256").update(`pack ${i}`).digest("hex");
}
function packOf(i: number): PackInfo {
  const entries: PackEntry[] = [];
  for (let j = 0; j < PER_PACK; j++)
    entries.push({ id: idOf(i, j), offset: j * 1000, length: 1000, rawLength: 990 + (j % 7), flags: j % 2 });
  return {
    name: packName(i),
    dataClass: i % 3 === 0 ? "ledger" : "state",
    sizeBytes: PER_PACK * 1000 + 64,
    entries,
  };
}

function heapAfterGc(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external + m.arrayBuffers;
}

function fill(index: ChunkIndex): void {
  for (let i = 0; i < PACKS; i++) index.add(packOf(i));
}

test("past its bound the index moves 200,000 chunks to disk, answers every lookup, and keeps a fraction of the memory", (t) => {
  const base = heapAfterGc();
  const inMemory = new ChunkIndex(Number.MAX_SAFE_INTEGER);
  fill(inMemory);
  const memoryCost = heapAfterGc() - base;
  assert.equal(inMemory.spilled, false);

  const base2 = heapAfterGc();
  const onDisk = new ChunkIndex(1000);
  fill(onDisk);
  const diskCost = heapAfterGc() - base2;
  t.diagnostic(
    `200,000 chunks: ${(memoryCost / 2 ** 20).toFixed(1)} MiB in memory, ${(diskCost / 2 ** 20).toFixed(1)} MiB spilled`,
  );
  try {
    assert.equal(onDisk.spilled, true);
    // 200,000 chunks in memory cost tens of MiB; on disk, the pack list and SQLite's capped cache.
    assert.ok(memoryCost > 40 * 2 ** 20, `in memory: ${memoryCost} bytes`);
    assert.ok(diskCost < memoryCost / 4, `on disk ${diskCost} bytes, in memory ${memoryCost}`);

    for (let k = 0; k < 2000; k++) {
      const i = (k * 7919) % PACKS;
      const j = (k * 104729) % PER_PACK;
      const a = onDisk.get(idOf(i, j));
      const b = inMemory.get(idOf(i, j));
      assert.ok(a && b, `chunk ${i}/${j}`);
      assert.equal(a.pack.name, packName(i));
      assert.equal(a.pack.dataClass, b.pack.dataClass);
      assert.deepEqual(a.entry, b.entry);
      assert.ok(onDisk.has(idOf(i, j)));
    }
    assert.equal(onDisk.get(randomBytes(32)), undefined);
    assert.equal(onDisk.has(randomBytes(32)), false);

    // A pack's chunks come back whole and in stored order, and write the same index object.
    const key = randomBytes(32);
    for (const i of [0, 77, PACKS - 1]) {
      assert.deepEqual(onDisk.entriesOf(packName(i)), packOf(i).entries);
      const meta = onDisk.packs.get(packName(i))!;
      assert.equal(meta.entryCount, PER_PACK);
      const decoded = decodeIndex(key, encodeIndex(key, [onDisk.packInfo(meta)]));
      assert.deepEqual(decoded, [packOf(i)]);
    }
    assert.deepEqual(onDisk.entriesOf("no such pack"), []);
  } finally {
    onDisk.close();
  }
});

test("a repository whose index lives on disk backs up with dedup, verifies, restores byte for byte, forgets and prunes", async (t) => {
  const saved = process.env.CHAINVAULT_INDEX_MEMORY_ENTRIES;
  process.env.CHAINVAULT_INDEX_MEMORY_ENTRIES = "0";
  t.after(() => {
    if (saved === undefined) delete process.env.CHAINVAULT_INDEX_MEMORY_ENTRIES;
    else process.env.CHAINVAULT_INDEX_MEMORY_ENTRIES = saved;
  });
  const dir = tempDir(t, "vault-index-spill");
  const { repo, root, password } = await newRepo(dir);
  const files = makeFiles(dir, { "a.bin": 400_000, "sub/b.bin": 900_000, "c.bin": 50_000 });

  const { index } = await repo.loadIndex();
  index.close();
  const first = await backup(repo, files.source, { tags: ["manual"] });
  assert.ok(first.chunksAdded > 10, `${first.chunksAdded} chunks`);
  {
    const { index: loaded } = await repo.loadIndex();
    assert.equal(loaded.spilled, true, "with a bound of 0 the loaded index is on disk");
    loaded.close();
  }
  // Unchanged data: every chunk is found in the on-disk index, nothing is stored again.
  const again = await backup(repo, files.source, { tags: ["manual"], force: true });
  assert.equal(again.chunksAdded, 0);

  writeFileSync(join(files.dir, "c.bin"), randomBytes(70_000));
  const third = await backup(repo, files.source, { tags: ["manual"] });
  assert.ok(third.chunksAdded > 0);

  const reopened = await Repository.open(new LocalBackend(root), password);
  const v = await verify(reopened, { readData: true });
  assert.equal(v.ok, true, JSON.stringify(v.snapshots.map((s) => s.problems)));
  assert.ok(v.chunksRead > 0);

  const target = join(dir, "restored");
  await restore(reopened, third.snapshotId, target);
  assert.deepEqual(contentOf(treeOf(target)), contentOf(treeOf(files.dir)));

  await forget(reopened, { last: 1 });
  const pr = await prune(reopened);
  assert.ok(pr.packsDeleted + pr.packsRepacked > 0, JSON.stringify(pr));
  const after = await verify(reopened, { readData: true });
  assert.equal(after.ok, true, JSON.stringify(after.snapshots.map((s) => s.problems)));
  const target2 = join(dir, "restored-after-prune");
  await restore(reopened, third.snapshotId, target2);
  assert.deepEqual(contentOf(treeOf(target2)), contentOf(treeOf(files.dir)));
});
