// Goal: prove that a snapshot whose tree was written by a malicious holder of the repository keys cannot make restore write, or leave a symlink that reaches, outside the target; method: manifests signed with the repository's own keys (so only restore's own checks stand in the way) whose trees add `../` paths, absolute paths, backslashes, duplicate paths, entries beneath symlinks and files, and outward symlinks (absolute, climbing, or climbing through a symlink to `.`) to the real chunks of a normal backup, each restored into a target inside a temp dir beside an empty "outside" directory that must stay empty.
import assert from "node:assert/strict";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, before, test } from "node:test";
import { backup } from "../../src/vault/backup.js";
import { VaultError, VaultErrorCode } from "../../src/vault/errors.js";
import type { Repository } from "../../src/vault/repository.js";
import { restore } from "../../src/vault/restore.js";
import type { FileNode, Manifest } from "../../src/vault/snapshot.js";
import {
  digestTree,
  initRepo,
  makeSourceTree,
  sameTree,
  sourceOf,
  treeDiff,
  writeRandomFile,
} from "./_vault-fixture.js";

let work: string;
let sourceDir: string;
let repo: Repository;
let legit: Manifest;
/** A real file of the snapshot: its chunks let a forged node carry real, restorable data. */
let donor: FileNode;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "chainvault-malicious-"));
  sourceDir = join(work, "source");
  // 0.25: about 330 KiB, enough for real chunks in every class.
  makeSourceTree(sourceDir, 0.25);
  // A symlink that stays inside the tree: restore must keep creating these.
  symlinkSync("page-5.db", join(sourceDir, "state", "latest"));
  repo = await initRepo(join(work, "repo"));
  const r = await backup(repo, sourceOf(sourceDir));
  const s = await repo.readSnapshot(r.snapshotId);
  assert.ok("manifest" in s);
  legit = s.manifest;
  donor = legit.components.find((c) => c.name === "state")!.files.find((f) => f.path === "state/page-0.db")!;
});

after(() => {
  rmSync(work, { recursive: true, force: true });
});

/** A place to restore into: `box/target` (holding old data) beside an empty `outside/`. */
function arena(name: string): { root: string; outside: string; box: string; target: string } {
  const root = join(work, name);
  const outside = join(root, "outside");
  const box = join(root, "box");
  const target = join(box, "target");
  mkdirSync(outside, { recursive: true });
  writeRandomFile(join(target, "old.dat"), 1000);
  return { root, outside, box, target };
}

function fileNode(path: string): FileNode {
  return { ...donor, path };
}

function dirNode(path: string): FileNode {
  return { path, type: "dir", mode: 0o755, mtimeMs: donor.mtimeMs, sizeBytes: 0 };
}

function linkNode(path: string, target: string): FileNode {
  return { path, type: "symlink", mode: 0o777, mtimeMs: donor.mtimeMs, sizeBytes: 0, target };
}

/** Signs and stores the legitimate manifest with `extra` nodes added to its state component. */
async function forge(
  extra: (a: ReturnType<typeof arena>) => FileNode[],
  a: ReturnType<typeof arena>,
): Promise<string> {
  const m = structuredClone(legit);
  const state = m.components.find((c) => c.name === "state")!;
  state.files.push(...extra(a));
  return repo.writeSnapshot(m);
}

/** Nothing escaped: `outside/` is empty and the target's parent holds only the target and its siblings. */
function assertContained(a: ReturnType<typeof arena>, label: string): void {
  assert.deepEqual(
    readdirSync(a.root).sort(),
    ["box", "outside"],
    `${label}: nothing beside box/ and outside/`,
  );
  assert.deepEqual(readdirSync(a.outside), [], `${label}: outside/ stays empty`);
  for (const n of readdirSync(a.box))
    assert.match(
      n,
      /^target($|\.restore-|\.pre-restore-)/,
      `${label}: box/${n} is the target or its sibling`,
    );
}

const unsafe: [string, (a: ReturnType<typeof arena>) => FileNode[]][] = [
  ["a `../` path", () => [fileNode("../escape")]],
  ["an absolute path", (a) => [fileNode(join(a.outside, "abs-file"))]],
  ["a path that climbs out through `..` segments", () => [fileNode("a/../../x")]],
  ["a `.` segment", () => [fileNode("state/./page")]],
  ["a backslash path", () => [fileNode("..\\..\\evil")]],
  ["a NUL byte", () => [fileNode("state/a\u0000b")]],
  ["the same path twice", () => [fileNode("state/dup"), fileNode("state/dup")]],
  ["a path the legitimate tree already holds, as a directory", () => [dirNode("state/page-0.db")]],
  [
    "a file beneath an absolute symlink",
    (a) => [linkNode("state/link", a.outside), fileNode("state/link/pwned")],
  ],
  [
    "a file listed before the climbing symlink it lies beneath",
    () => [fileNode("state/link/pwned"), linkNode("state/link", "../..")],
  ],
  [
    "a directory and file beneath a climbing symlink",
    () => [
      linkNode("state/link", "../../../outside"),
      dirNode("state/link/sub"),
      fileNode("state/link/sub/pwned"),
    ],
  ],
  ["a file beneath a file", () => [fileNode("state/page-1.db/child")]],
];

for (const [label, extra] of unsafe)
  test(`restore refuses a snapshot whose tree holds ${label}, before writing anything`, async () => {
    const a = arena(label.replace(/[^a-z]+/g, "-"));
    const before = digestTree(a.target);
    const id = await forge(extra, a);
    await assert.rejects(restore(repo, id, a.target), (err: unknown) => {
      assert.ok(err instanceof VaultError, String(err));
      assert.equal(err.code, VaultErrorCode.UnsafePath, err.message);
      return true;
    });
    assertContained(a, label);
    assert.deepEqual(readdirSync(a.box), ["target"], "nothing was staged");
    assert.ok(sameTree(digestTree(a.target), before), "the target is untouched");
  });

test("restore refuses a snapshot whose tree holds an empty path: its manifest does not validate", async () => {
  const a = arena("empty-path");
  const id = await forge(() => [fileNode("")], a);
  await assert.rejects(restore(repo, id, a.target), (err: unknown) => {
    assert.ok(err instanceof VaultError, String(err));
    assert.equal(err.code, VaultErrorCode.ObjectCorrupt, err.message);
    return true;
  });
  assertContained(a, "empty path");
});

/** Whether `path`, resolved through every symlink, lies inside `dir`. */
function resolvesInside(dir: string, path: string): boolean {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    // Dangling or looping: it reaches nothing.
    return true;
  }
  const rel = relative(realpathSync(dir), real);
  return rel === "" || (!rel.startsWith("..") && !rel.startsWith("/"));
}

const outward: [string, (a: ReturnType<typeof arena>) => FileNode[], string[]][] = [
  ["an absolute symlink", (a) => [linkNode("state/abs-link", a.outside)], ["state/abs-link"]],
  ["a symlink that climbs out", () => [linkNode("state/up", "../../../outside")], ["state/up"]],
  ["a symlink to the target's parent", () => [linkNode("state/up2", "../..")], ["state/up2"]],
  [
    // `self` resolves to `state/`, so `self/self/../..` is lexically `state` but really the
    // target's parent: only a check that knows `self` is a symlink sees it leave.
    "a symlink that climbs through a symlink to `.`",
    () => [linkNode("state/self", "."), linkNode("state/climb", "self/self/../..")],
    ["state/climb"],
  ],
  ["a symlink with an empty target", () => [linkNode("state/empty", "")], ["state/empty"]],
];

for (const [label, extra, dropped] of outward)
  test(`restore does not create ${label}, warns, and restores the legitimate content`, async () => {
    const a = arena(label.replace(/[^a-z]+/g, "-"));
    const id = await forge(extra, a);
    const r = await restore(repo, id, a.target);
    for (const p of dropped) {
      assert.ok(
        r.warnings.some((w) => w.includes(p)),
        `a warning names ${p}: ${JSON.stringify(r.warnings)}`,
      );
      assert.throws(() => lstatSync(join(a.target, p)), `${p} was not created`);
    }
    assertContained(a, label);
    const got = digestTree(a.target)!;
    for (const [p, d] of digestTree(sourceDir)!)
      if (!d.startsWith("dir"))
        assert.equal(got.get(p), d, `${p} restored: ${treeDiff(got, digestTree(sourceDir))}`);
    assert.equal(got.get("state/latest"), "symlink page-5.db", "the inward symlink is kept");
    // Every symlink restore did create reaches only inside the target.
    for (const [p, d] of got)
      if (d.startsWith("symlink"))
        assert.ok(resolvesInside(a.target, join(a.target, p)), `${p} (${d}) resolves inside the target`);
  });
