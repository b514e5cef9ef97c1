// Goal: prove that damage to any repository file is detected and that restore will not write a damaged or edited snapshot; method: a real LocalBackend repository in a temp directory with three snapshots and two key files, then 210 rounds (on three copies at once) that each flip one random bit of a random pack, index object, manifest, key file or the config, reopen the repository, run verify with data reading, and flip the bit back; then restores from copies of the repository with a flipped bit in a pack and with a manifest edited, re-sealed and stored under its new name.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { backup } from "../../src/vault/backup.js";
import { open, seal } from "../../src/vault/crypto.js";
import { VaultError, VaultErrorCode } from "../../src/vault/errors.js";
import { packObjectName } from "../../src/vault/pack.js";
import type { Repository } from "../../src/vault/repository.js";
import { restore } from "../../src/vault/restore.js";
import { journalPathOf } from "../../src/vault/restore-swap.js";
import type { Manifest } from "../../src/vault/snapshot.js";
import { verify } from "../../src/vault/verify.js";
import {
  digestTree,
  initRepo,
  makeSourceTree,
  mutateSourceTree,
  openRepo,
  PASSWORD,
  sameTree,
  sourceOf,
  TEST_KDF,
  treeDiff,
  writeRandomFile,
} from "./_vault-fixture.js";

// 210 rounds: 42 flips in each of the five kinds of repository file.
const ROUNDS = 210;
// Copies of the repository damaged at once.
const WORKERS = 3;
const KINDS = ["pack", "index", "snapshot", "key", "config"] as const;
type Kind = (typeof KINDS)[number];

let work: string;
let pristine: string;
let sourceDir: string;
let snapshots: string[];

before(async () => {
  work = mkdtempSync(join(tmpdir(), "chainvault-tamper-"));
  sourceDir = join(work, "source");
  pristine = join(work, "pristine");
  makeSourceTree(sourceDir);
  const repo = await initRepo(pristine);
  // A second key file with the same passphrase: damage to one must not lock the operator out.
  await repo.addKey(PASSWORD, "second", TEST_KDF);
  snapshots = [];
  for (let i = 0; i < 3; i++) {
    if (i > 0) mutateSourceTree(sourceDir);
    snapshots.push((await backup(repo, sourceOf(sourceDir), { tags: [`t${i}`] })).snapshotId);
  }
});

after(() => {
  rmSync(work, { recursive: true, force: true });
});

/** A fresh copy of the undamaged repository, so each test starts from the same state. */
function copyOfRepo(name: string): string {
  const root = join(work, name);
  cpSync(pristine, root, { recursive: true });
  return root;
}

/** Repository files of one kind, as paths relative to the root. */
function filesOfKind(root: string, kind: Kind): string[] {
  const all = (readdirSync(root, { recursive: true }) as string[])
    .map((p) => p.split("\\").join("/"))
    .filter((p) => !p.includes(".tmp-"));
  const isFile = (p: string): boolean => /[0-9a-f]{16,64}$/.test(p) || p === "config";
  const prefix = { pack: "data/", index: "index/", snapshot: "snapshots/", key: "keys/", config: "config" }[
    kind
  ];
  return all.filter((p) => isFile(p) && (kind === "config" ? p === "config" : p.startsWith(prefix)));
}

function flipBit(path: string, byte: number, bit: number): void {
  const b = readFileSync(path);
  b[byte]! ^= 1 << bit;
  writeFileSync(path, b);
}

/** How damage showed, or undefined if the repository opened and verified clean. */
async function detection(root: string): Promise<string | undefined> {
  let repo: Repository;
  try {
    repo = await openRepo(root);
  } catch (err) {
    if (err instanceof VaultError) return `open failed: ${err.code}`;
    throw err;
  }
  try {
    const r = await verify(repo, { readData: true });
    if (r.ok) return undefined;
    return [...r.repoProblems, ...r.snapshots.flatMap((s) => s.problems)].join("; ");
  } catch (err) {
    if (err instanceof VaultError) return `verify failed: ${err.code}`;
    throw err;
  }
}

test("verify --read-data detects each of 210 single-bit flips in packs, index objects, manifests, key files and the config, and passes again once each is undone", {
  timeout: 120_000,
}, async () => {
  const roots = Array.from({ length: WORKERS }, (_, w) => copyOfRepo(`flips-${w}`));
  for (const root of roots)
    assert.equal(await detection(root), undefined, "the undamaged repository verifies");
  const counts = new Map<Kind, number>();
  // Each worker damages its own copy, so one worker's fsyncs overlap another's decryption.
  await Promise.all(
    roots.map(async (root, w) => {
      for (let round = w; round < ROUNDS; round += WORKERS) {
        const kind = KINDS[round % KINDS.length]!;
        const files = filesOfKind(root, kind);
        assert.ok(files.length > 0, `the repository has ${kind} files`);
        const rel = files[Math.floor(Math.random() * files.length)]!;
        const path = join(root, rel);
        const size = readFileSync(path).length;
        const byte = Math.floor(Math.random() * size);
        const bit = Math.floor(Math.random() * 8);
        const what = `round ${round}: bit ${bit} of byte ${byte}/${size} of ${rel}`;
        flipBit(path, byte, bit);
        const found = await detection(root);
        assert.ok(found !== undefined, `${what} went undetected`);
        flipBit(path, byte, bit);
        assert.equal(await detection(root), undefined, `${what}: the repository verifies again once undone`);
        counts.set(kind, (counts.get(kind) ?? 0) + 1);
        // Verification records would pile up by the thousand; they are not under test here.
        if (round % 30 < WORKERS) rmSync(join(root, "verifications"), { recursive: true, force: true });
      }
    }),
  );
  assert.deepEqual(
    KINDS.map((k) => counts.get(k)),
    KINDS.map(() => ROUNDS / KINDS.length),
  );
});

/** A chunk of the newest snapshot: the file it belongs to and where it is stored. */
async function chunkOfLatest(
  repo: Repository,
): Promise<{ path: string; objectPath: string; offset: number; length: number }> {
  const snap = await repo.readSnapshot(snapshots.at(-1)!);
  assert.ok("manifest" in snap, "the newest snapshot decodes");
  const { index } = await repo.loadIndex();
  const c = snap.manifest.components.find((x) => x.name === "state")!;
  const f = c.files.find((x) => x.type === "file" && (x.chunks?.length ?? 0) > 0)!;
  const loc = index.get(Buffer.from(f.chunks![0]!, "hex"))!;
  return {
    path: f.path,
    objectPath: packObjectName(loc.pack.dataClass, loc.pack.name),
    offset: loc.entry.offset,
    length: loc.entry.length,
  };
}

/** A target holding data an operator would not want mixed with a damaged restore. */
function oldTarget(name: string): { target: string; before: Map<string, string> } {
  const parent = join(work, name);
  const target = join(parent, "target");
  writeRandomFile(join(target, "ledger", "seg-0.dat"), 4096);
  writeRandomFile(join(target, "notes.txt"), 100);
  return { target, before: digestTree(target)! };
}

function siblingsOf(target: string): string[] {
  return readdirSync(join(target, "..")).sort();
}

test("restore refuses a snapshot whose pack holds a flipped bit and leaves the target untouched", async () => {
  const root = copyOfRepo("restore-flip");
  const repo = await openRepo(root);
  const c = await chunkOfLatest(repo);
  flipBit(join(root, c.objectPath), c.offset + Math.floor(c.length / 2), 3);
  const { target, before } = oldTarget("restore-flip-target");
  await assert.rejects(restore(repo, snapshots.at(-1)!, target), (err: unknown) => {
    assert.ok(err instanceof VaultError, String(err));
    assert.equal(err.code, VaultErrorCode.VerifyFailed);
    assert.match(err.message, /does not authenticate/);
    return true;
  });
  assert.ok(
    sameTree(digestTree(target), before),
    `the target is untouched: ${treeDiff(digestTree(target), before)}`,
  );
  assert.ok(!existsSync(journalPathOf(target)), "no swap was started");
  assert.ok(!siblingsOf(target).some((n) => n.includes("pre-restore")), "nothing was moved aside");
});

test("restore --force writes past a flipped bit in a pack with a loud warning and restores every other file", async () => {
  const root = copyOfRepo("restore-force");
  const repo = await openRepo(root);
  const c = await chunkOfLatest(repo);
  flipBit(join(root, c.objectPath), c.offset + Math.floor(c.length / 2), 5);
  const { target, before } = oldTarget("restore-force-target");
  const r = await restore(repo, snapshots.at(-1)!, target, { force: true });
  assert.ok(
    r.warnings.some((w) => w.includes(c.path) && /does not authenticate/.test(w)),
    `a warning names the damaged file: ${r.warnings.join("; ")}`,
  );
  const got = digestTree(target)!;
  const want = digestTree(sourceDir)!;
  for (const [p, d] of want) {
    if (p === c.path) assert.notEqual(got.get(p), d, "the damaged file is not passed off as whole");
    else if (!d.startsWith("dir")) assert.equal(got.get(p), d, `${p} restored intact`);
  }
  assert.ok(r.keptAside, "the old data was kept aside");
  assert.ok(sameTree(digestTree(r.keptAside), new Map([...before].filter(([p]) => p !== "notes.txt"))));
});

test("restore refuses a snapshot whose last data verification failed, and restores it once verify passes again", async () => {
  const root = copyOfRepo("restore-verified");
  let repo = await openRepo(root);
  const c = await chunkOfLatest(repo);
  // The last byte of the pack: its trailer, which restore itself never reads.
  const path = join(root, c.objectPath);
  const last = readFileSync(path).length - 1;
  flipBit(path, last, 0);
  const v = await verify(repo, { readData: true });
  assert.equal(v.ok, false);
  const { target, before } = oldTarget("restore-verified-target");
  await assert.rejects(restore(repo, snapshots.at(-1)!, target), (err: unknown) => {
    assert.ok(err instanceof VaultError, String(err));
    assert.equal(err.code, VaultErrorCode.VerifyFailed);
    assert.match(err.message, /verification .* failed/);
    return true;
  });
  assert.ok(sameTree(digestTree(target), before), "the target is untouched");
  flipBit(path, last, 0);
  repo = await openRepo(root);
  assert.equal((await verify(repo, { readData: true })).ok, true);
  await restore(repo, snapshots.at(-1)!, target);
  const got = digestTree(target)!;
  for (const [p, d] of digestTree(sourceDir)!)
    if (!d.startsWith("dir")) assert.equal(got.get(p), d, `${p} restored`);
});

test("a manifest edited, re-sealed and stored under its new name fails its signature, and restore refuses it", async () => {
  const root = copyOfRepo("edited-manifest");
  const repo = await openRepo(root);
  const id = snapshots.at(-1)!;
  const aad = Buffer.from("chainvault/snapshot/v1");
  const plain = open(repo.master.dataKey, readFileSync(join(root, "snapshots", id)), aad);
  assert.ok(plain, "the manifest opens with the data key");
  const doc = JSON.parse(plain.toString("utf8")) as { manifest: Manifest; signature: string };
  const edits: [string, (m: Manifest) => void][] = [
    ["a tag added", (m) => m.tags.push("keep-forever")],
    ["a size changed", (m) => (m.components[0]!.sizeBytes += 1)],
    [
      "a file's chunks swapped for another file's",
      (m) => {
        const files = m.components.find((x) => x.name === "state")!.files.filter((f) => f.type === "file");
        [files[0]!.chunks, files[1]!.chunks] = [files[1]!.chunks, files[0]!.chunks];
      },
    ],
  ];
  for (const [label, edit] of edits) {
    const m = structuredClone(doc.manifest);
    edit(m);
    const bytes = seal(
      repo.master.dataKey,
      Buffer.from(JSON.stringify({ manifest: m, signature: doc.signature })),
      aad,
    );
    const forged = createHash("sha256").update(bytes).digest("hex");
    writeFileSync(join(root, "snapshots", forged), bytes);
    const v = await verify(repo, { snapshots: [forged] });
    assert.equal(v.ok, false, label);
    assert.match(v.snapshots[0]!.problems.join("; "), /signature/, label);
    const target = join(work, `edited-${forged.slice(0, 8)}`, "target");
    await assert.rejects(restore(repo, forged, target), (err: unknown) => {
      assert.ok(err instanceof VaultError, String(err));
      assert.match(err.message, /signature does not verify/);
      return true;
    });
    assert.ok(!existsSync(target), `${label}: nothing was restored`);
    assert.ok(!existsSync(join(target, "..")) || readdirSync(join(target, "..")).length === 0);
  }
  // The untouched original still verifies: the forgeries harmed nothing but themselves.
  assert.equal((await verify(repo, { snapshots: [id], readData: true })).ok, true);
});
