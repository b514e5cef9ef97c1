// Goal: prove that SIGKILL at any point of backup, prune or restore loses no complete snapshot, leaves a repository that verifies and a lock that blocks no one, and leaves a restore target holding either the old data or the complete new data, never a mix; method: a real child process runs each operation on a LocalBackend repository in a temp directory and is SIGKILLed 20+ times per operation, at the named crash points (CHAINVAULT_CRASH_AT) and after random delays, and after each kill the parent reopens the repository, checks every earlier snapshot is still there, verifies with data reading, takes an exclusive lock, and for restore compares the target with both trees and runs the restore again.
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { backup } from "../../src/vault/backup.js";
import { forget } from "../../src/vault/forget.js";
import { listLocks, RepoLock } from "../../src/vault/lock.js";
import { prune } from "../../src/vault/prune.js";
import { restore } from "../../src/vault/restore.js";
import { journalPathOf } from "../../src/vault/restore-swap.js";
import { verify } from "../../src/vault/verify.js";
import {
  digestTree,
  initRepo,
  makeSourceTree,
  mutateSourceTree,
  openRepo,
  sameTree,
  snapshotIds,
  sourceOf,
  tempDir,
  treeDiff,
  writeRandomFile,
} from "./_vault-fixture.js";

const PROJECT = join(import.meta.dirname, "..", "..");
const CHILD_SOURCE = join(import.meta.dirname, "_vault-child.ts");
// Kills per operation that land before the operation finished: the issue asks for 20+.
const KILLS = 22;
// Cycles per operation at most: random delays that land after the end do not count as kills.
const MAX_CYCLES = 60;
// 1: a ~1.3 MiB source, so an operation lasts long enough to be killed part-way yet a
// kill cycle stays around a second.
const SCALE = 1;
// 128 KiB packs: every operation writes or deletes many objects, each a separate instant to die at.
const PACK_BYTES = 128 * 1024;
// A child that neither finishes nor dies in this long is hung: the test fails rather than waits.
const CHILD_TIMEOUT_MS = 60_000;

let bundleDir: string;
let childScript: string;

before(() => {
  // The child is bundled once with esbuild (tsx's own compiler) and run with plain node:
  // loading it through tsx costs ~2 s per process on this machine, 60+ times over. The
  // bundle's node_modules link lets its external packages (zstd, zod) resolve.
  bundleDir = mkdtempSync(join(tmpdir(), "chainvault-vault-child-"));
  symlinkSync(join(PROJECT, "node_modules"), join(bundleDir, "node_modules"));
  childScript = join(bundleDir, "child.mjs");
  const r = spawnSync(
    join(PROJECT, "node_modules", ".bin", "esbuild"),
    [
      CHILD_SOURCE,
      "--bundle",
      "--platform=node",
      "--format=esm",
      "--packages=external",
      `--outfile=${childScript}`,
      "--log-level=warning",
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.status, 0, `the child script bundles: ${r.stderr}`);
});

after(() => {
  rmSync(bundleDir, { recursive: true, force: true });
});

type Kill = { crashAt: string } | { afterMs: number } | undefined;

interface Outcome {
  /** Died by SIGKILL before it finished the operation. */
  killed: boolean;
  /** How long the operation took, if it finished. */
  opMs?: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

function killLabel(kill: Kill): string {
  if (!kill) return "no kill";
  return "crashAt" in kill ? `crash point ${kill.crashAt}` : `kill after ${kill.afterMs.toFixed(0)} ms`;
}

/**
 * A child process started ahead of its job, so that its loading overlaps the checks of the
 * previous one; {@link run} sends the job and waits for the end.
 */
class Child {
  private readonly proc: ChildProcess;
  private out = "";
  private err = "";
  private armed = false;
  private readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly op: string,
    readonly kill: Kill,
  ) {
    const env = { ...process.env };
    delete env.CHAINVAULT_CRASH_AT;
    if (kill && "crashAt" in kill) env.CHAINVAULT_CRASH_AT = kill.crashAt;
    this.proc = spawn(process.execPath, [childScript, op], { env, stdio: ["pipe", "pipe", "pipe"] });
    this.proc.stdout!.setEncoding("utf8");
    this.proc.stderr!.setEncoding("utf8");
    this.proc.stdout!.on("data", (d: string) => {
      this.out += d;
      // The delay counts from the start of the operation, not of the process.
      if (this.armed && kill && "afterMs" in kill && this.out.includes("go\n")) {
        this.armed = false;
        setTimeout(() => this.proc.kill("SIGKILL"), kill.afterMs);
      }
    });
    this.proc.stderr!.on("data", (d: string) => {
      this.err += d;
    });
    // A child that died early makes writing its job fail; its exit tells the story.
    this.proc.stdin!.on("error", () => undefined);
    this.closed = new Promise((resolve, reject) => {
      this.proc.on("error", reject);
      this.proc.on("close", (code, signal) => resolve({ code, signal }));
    });
    // Observed in run(); must not be an unhandled rejection meanwhile.
    this.closed.catch(() => undefined);
  }

  async run(job: Record<string, unknown>): Promise<Outcome> {
    this.armed = true;
    let hung = false;
    const guard = setTimeout(() => {
      hung = true;
      this.proc.kill("SIGKILL");
    }, CHILD_TIMEOUT_MS);
    this.proc.stdin!.end(`${JSON.stringify(job)}\n`);
    const { code, signal } = await this.closed.finally(() => clearTimeout(guard));
    if (hung) throw new Error(`The ${this.op} child hung (${killLabel(this.kill)}); stderr: ${this.err}`);
    const done = /done (\d+)/.exec(this.out);
    return {
      killed: signal === "SIGKILL" && !done,
      ...(done ? { opMs: Number(done[1]) } : {}),
      code,
      signal,
      stderr: this.err,
    };
  }

  /** Ends a child that was never given its job. */
  dispose(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL");
  }
}

/**
 * Runs `op` in child processes until the plan has its kills: `prepare` sets up each cycle
 * and returns the job, `check` inspects what the child left.
 */
async function killLoop(
  op: string,
  plan: KillPlan,
  prepare: (kill: Kill) => Promise<Record<string, unknown>>,
  check: (label: string, o: Outcome) => Promise<void>,
): Promise<void> {
  let child = new Child(op, plan.next());
  try {
    for (;;) {
      const job = await prepare(child.kill);
      const o = await child.run(job);
      const label = `${op} cycle ${plan.cycles} (${killLabel(child.kill)})`;
      plan.record(child.kill, o);
      const more = plan.more;
      if (more) child = new Child(op, plan.next());
      await check(label, o);
      if (!more) return;
    }
  } finally {
    child.dispose();
  }
}

/**
 * The kills to make: each crash point `repeat` times, then random delays up to a little
 * past the median length of the operation, until {@link KILLS} kills have landed.
 */
class KillPlan {
  private readonly points: string[];
  kills = 0;
  cycles = 0;
  private readonly opMs: number[] = [];

  constructor(points: readonly string[], repeat: number) {
    this.points = points.flatMap((p) => Array.from({ length: repeat }, () => p));
  }

  get more(): boolean {
    return this.kills < KILLS && this.cycles < MAX_CYCLES;
  }

  next(): Kill {
    const i = this.cycles++;
    // The first run is not killed: it measures how long the operation takes.
    if (i === 0) return undefined;
    const point = this.points[i - 1];
    if (point) return { crashAt: point };
    const sorted = [...this.opMs].sort((x, y) => x - y);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    return { afterMs: Math.random() * median * 1.2 };
  }

  record(kill: Kill, o: Outcome): void {
    const label = killLabel(kill);
    // A kill that lands after the operation finished, while the process exits, is no failure.
    if (!o.killed && o.signal !== "SIGKILL")
      assert.equal(o.code, 0, `the child finished cleanly (${label}); stderr: ${o.stderr}`);
    if (kill && "crashAt" in kill) assert.ok(o.killed, `the child reached ${kill.crashAt}`);
    if (o.killed) this.kills++;
    if (o.opMs !== undefined) this.opMs.push(o.opMs);
  }
}

/**
 * After a kill: the dead process's lock blocks not even an exclusive lock, every snapshot
 * that was complete before is still there, and the repository verifies with data reading.
 * Returns how many stale locks the dead process had left.
 */
async function assertIntact(root: string, before: readonly string[], label: string): Promise<number> {
  const repo = await openRepo(root);
  const left = await listLocks(repo.backend);
  assert.ok(
    left.every((l) => l.stale),
    `${label}: every lock left is stale: ${JSON.stringify(left)}`,
  );
  // Before anything else can clear it away: the stale lock must not block an exclusive lock.
  const lock = await RepoLock.acquire(repo.backend, { exclusive: true, op: "check" });
  await lock.release();
  assert.deepEqual(await listLocks(repo.backend), [], `${label}: the stale lock is removed`);
  const ids = snapshotIds(root);
  for (const id of before) assert.ok(ids.includes(id), `${label}: snapshot ${id.slice(0, 12)} survived`);
  const v = await verify(repo, { readData: true });
  assert.ok(
    v.ok,
    `${label}: the repository verifies: ${[...v.repoProblems, ...v.snapshots.flatMap((s) => s.problems)].join("; ")}`,
  );
  return left.length;
}

/** After all the kills: prune runs clean and leaves nothing more to delete and nothing missing. */
async function assertPrunesClean(root: string): Promise<void> {
  const repo = await openRepo(root);
  await prune(repo);
  const again = await prune(repo, { dryRun: true });
  assert.equal(again.packsDeleted, 0, "prune deleted every leftover of the killed runs");
  assert.equal(again.missingChunks, 0);
  assert.equal(again.unreadablePacks, 0);
  assert.equal((await verify(repo, { readData: true })).ok, true);
  const temporaries = (readdirSync(root, { recursive: true }) as string[]).filter((p) => p.includes(".tmp-"));
  assert.deepEqual(temporaries, [], "prune removed the temporary files of killed writes");
}

test("backup SIGKILLed at 20+ points never loses a complete snapshot, and the repository verifies after each kill", {
  timeout: 150_000,
}, async (t) => {
  const dir = tempDir(t, "crash-backup");
  const source = join(dir, "source");
  const root = join(dir, "repo");
  makeSourceTree(source, SCALE);
  await backup(await initRepo(root, PACK_BYTES), sourceOf(source));
  const plan = new KillPlan(["vault.before-index", "vault.before-snapshot"], 3);
  let before: string[] = [];
  let stale = 0;
  await killLoop(
    "backup",
    plan,
    async () => {
      mutateSourceTree(source, SCALE);
      before = snapshotIds(root);
      // A quarter of the runs read every file again: a longer backup, mostly deduplicated.
      return { repo: root, source, force: Math.random() < 0.25 };
    },
    async (label, o) => {
      stale += await assertIntact(root, before, label);
      if (o.opMs !== undefined)
        assert.equal(
          snapshotIds(root).length,
          before.length + 1,
          `${label}: a finished backup added its snapshot`,
        );
    },
  );
  assert.ok(plan.kills >= 20, `${plan.kills} kills landed in ${plan.cycles} cycles`);
  t.diagnostic(`${plan.kills} kills in ${plan.cycles} cycles; ${stale} stale locks cleared`);
  assert.ok(stale > 0, "some kills left a stale lock, and none blocked the next operation");
  await assertPrunesClean(root);
});

test("prune SIGKILLed at 20+ points never loses a kept snapshot, and the repository verifies after each kill", {
  timeout: 150_000,
}, async (t) => {
  const dir = tempDir(t, "crash-prune");
  const source = join(dir, "source");
  const root = join(dir, "repo");
  makeSourceTree(source, SCALE);
  const repo = await initRepo(root, PACK_BYTES);
  await backup(repo, sourceOf(source));
  const plan = new KillPlan(
    ["vault.prune-repacked", "vault.prune-indexed", "vault.prune-old-index-deleted"],
    2,
  );
  let before: string[] = [];
  let stale = 0;
  await killLoop(
    "prune",
    plan,
    async () => {
      // Each cycle gives prune work: a new snapshot, and the oldest ones forgotten.
      mutateSourceTree(source, SCALE);
      await backup(repo, sourceOf(source));
      await forget(repo, { last: 3 });
      before = snapshotIds(root);
      return { repo: root };
    },
    async (label) => {
      stale += await assertIntact(root, before, label);
      assert.deepEqual(snapshotIds(root), before, `${label}: prune removes no snapshot`);
    },
  );
  assert.ok(plan.kills >= 20, `${plan.kills} kills landed in ${plan.cycles} cycles`);
  t.diagnostic(`${plan.kills} kills in ${plan.cycles} cycles; ${stale} stale locks cleared`);
  assert.ok(stale > 0, "some kills left a stale lock, and none blocked the next operation");
  await assertPrunesClean(root);
});

test("restore SIGKILLed at 20+ points leaves the target holding the old data or the complete new data, and finishes when run again", {
  timeout: 150_000,
}, async (t) => {
  const dir = tempDir(t, "crash-restore");
  const source = join(dir, "source");
  const root = join(dir, "repo");
  makeSourceTree(source, SCALE);
  const snap = (await backup(await initRepo(root, PACK_BYTES), sourceOf(source))).snapshotId;
  // The old data: the same components with other content, plus entries the snapshot does
  // not hold, which restore carries over into the new tree.
  const template = join(dir, "old");
  makeSourceTree(template, SCALE / 2);
  writeRandomFile(join(template, "notes.txt"), 300);
  writeRandomFile(join(template, "extra", "a.bin"), 5000);
  writeRandomFile(join(template, "extra", "b.bin"), 5000);
  symlinkSync("ledger/seg-0.dat", join(template, "current"));
  const box = join(dir, "box");
  const target = join(box, "target");
  /** A box holding the old data at the target, or (`bare`) no target at all. */
  const reset = (bare = false): void => {
    rmSync(box, { recursive: true, force: true });
    mkdirSync(box);
    if (!bare) cpSync(template, target, { recursive: true, verbatimSymlinks: true });
  };
  const old = digestTree(template)!;
  const carried = new Set(["notes.txt", "extra", "extra/a.bin", "extra/b.bin", "current"]);
  // The new data, as an uninterrupted restore leaves it: the snapshot plus what was carried over.
  reset();
  // What a restore killed while writing its journal leaves: a temporary of a dead process.
  const deadPid = spawnSync(process.execPath, ["-e", ""]).pid;
  const journalTemporary = `${journalPathOf(target)}.tmp-${deadPid}`;
  writeFileSync(journalTemporary, "{");
  const clean = await restore(await openRepo(root), snap, target);
  assert.ok(!existsSync(journalTemporary), "restore removes the journal temporary of a dead restore");
  const fresh = digestTree(target)!;
  const oldAside = new Map([...old].filter(([p]) => !carried.has(p)));
  assert.ok(
    sameTree(digestTree(clean.keptAside!), oldAside),
    "an uninterrupted restore keeps the old data aside",
  );
  for (const [p, d] of digestTree(source)!)
    if (!d.startsWith("dir")) assert.equal(fresh.get(p), d, `${p} is restored`);
  for (const p of carried) assert.equal(fresh.get(p), old.get(p), `${p} is carried over`);
  // Into no target at all: the snapshot alone.
  reset(true);
  await restore(await openRepo(root), snap, target);
  const bareFresh = digestTree(target)!;
  assert.ok(sameTree(bareFresh, new Map([...fresh].filter(([p]) => !carried.has(p)))));

  const plan = new KillPlan(
    [
      "vault.restore-staged",
      "vault.restore-swap-journaled",
      "vault.restore-swap-carried",
      "vault.restore-swap-aside",
    ],
    2,
  );
  const seen = { old: 0, new: 0, journaled: 0, bare: 0 };
  let bare = false;
  let stale = 0;
  await killLoop(
    "restore",
    plan,
    async (kill) => {
      // A third of the random kills restore where nothing was (the swap points need a target).
      bare = kill !== undefined && "afterMs" in kill && Math.random() < 1 / 3;
      if (bare) seen.bare++;
      reset(bare);
      return { repo: root, snapshot: snap, target };
    },
    async (label) => {
      const now = digestTree(target);
      const want = bare ? bareFresh : fresh;
      if (existsSync(journalPathOf(target))) seen.journaled++;
      else if (bare ? now === undefined : sameTree(now, old)) seen.old++;
      else {
        assert.ok(
          sameTree(now, want),
          `${label}: without a journal the target holds the old or the new data, not a mix: ${treeDiff(now, want)}`,
        );
        seen.new++;
      }
      stale += await assertIntact(root, [snap], label);
      // Running the restore again finishes (or redoes) it: the new data, the old kept aside.
      await restore(await openRepo(root), snap, target);
      assert.ok(
        sameTree(digestTree(target), want),
        `${label}: the rerun leaves the new data: ${treeDiff(digestTree(target), want)}`,
      );
      const aside = readdirSync(box).filter((n) => n.startsWith("target.pre-restore-"));
      if (!bare)
        assert.ok(
          aside.some((n) => sameTree(digestTree(join(box, n)), oldAside)),
          `${label}: the old data is kept in one of ${aside.join(", ")}`,
        );
      assert.ok(!existsSync(journalPathOf(target)), `${label}: the journal is gone`);
      const litter = readdirSync(box).filter((n) => n !== "target" && !n.startsWith("target.pre-restore-"));
      assert.deepEqual(litter, [], `${label}: nothing but the target and the old data is left beside it`);
    },
  );
  assert.ok(plan.kills >= 20, `${plan.kills} kills landed in ${plan.cycles} cycles`);
  t.diagnostic(
    `${plan.kills} kills in ${plan.cycles} cycles; ${stale} stale locks cleared; target after the kill: ${JSON.stringify(seen)}`,
  );
  assert.ok(stale > 0, "some kills left a stale lock, and none blocked the next operation");
  // A kill left the old data in place at least once, and the new data or a journal at least once.
  assert.ok(seen.old > 0 && seen.new + seen.journaled > 0, JSON.stringify(seen));
});
