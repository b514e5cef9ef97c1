// Shared helpers of the vault fault tests (and of their child process): a repository in a
// temp directory with small chunks and a cheap key derivation, a random node-like source
// tree, and digests of file trees to compare before and after an operation.
import { createHash, randomBytes } from "node:crypto";
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { TestContext } from "node:test";
import { LocalBackend } from "../../src/vault/backends/local.js";
import type { ChunkerParams } from "../../src/vault/chunker.js";
import { Repository } from "../../src/vault/repository.js";
import type { BackupSource } from "../../src/vault/source.js";

export const PASSWORD = "fault-test passphrase";

/** scrypt at N = 1024: about a millisecond per key file, so a test may reopen a repository hundreds of times. */
export const TEST_KDF = { N: 1024, r: 8, p: 1 } as const;

// 16 / 64 / 256 KiB: a few MiB of source cut into dozens of chunks, so packs hold many blobs.
export const FAULT_CHUNKER: ChunkerParams = { minBytes: 16384, avgBytes: 65536, maxBytes: 262144 };

// 512 KiB packs: a 2 MiB source spreads over several packs per class.
export const FAULT_PACK_BYTES = 512 * 1024;

/** A temp directory removed when the test ends. */
export function tempDir(t: TestContext, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `chainvault-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A new repository at `root` with the fault tests' small chunks and packs. */
export function initRepo(root: string, packTargetBytes = FAULT_PACK_BYTES): Promise<Repository> {
  return Repository.init(new LocalBackend(root), PASSWORD, {
    kdf: TEST_KDF,
    chunker: FAULT_CHUNKER,
    packTargetBytes,
  });
}

/** Opens the repository at `root` afresh: nothing is cached between calls. */
export function openRepo(root: string): Promise<Repository> {
  return Repository.open(new LocalBackend(root), PASSWORD);
}

/** The ids of the snapshots stored at `root`, sorted. */
export function snapshotIds(root: string): string[] {
  try {
    return readdirSync(join(root, "snapshots"))
      .filter((n) => /^[0-9a-f]{64}$/.test(n))
      .sort();
  } catch {
    return [];
  }
}

export function writeRandomFile(path: string, sizeBytes: number): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, randomBytes(sizeBytes));
}

/**
 * A node-like source under `dir`: `ledger/` (append-only segments), `state/` (pages
 * rewritten in place), `keys/` (a small secret, its own data class) and a symlink inside
 * the tree. `scale` multiplies every size (1 ≈ 1.3 MiB).
 */
export function makeSourceTree(dir: string, scale = 1): void {
  const kib = (n: number): number => Math.round(n * 1024 * scale);
  for (let i = 0; i < 3; i++) writeRandomFile(join(dir, "ledger", `seg-${i}.dat`), kib(256));
  for (let i = 0; i < 6; i++) writeRandomFile(join(dir, "state", `page-${i}.db`), kib(80));
  writeRandomFile(join(dir, "keys", "validator.key"), 64);
  writeFileSync(join(dir, "state", "CURRENT"), "page-5.db\n");
}

/** Changes a source the way a running node does: a segment grows, two state pages are rewritten. */
export function mutateSourceTree(dir: string, scale = 1): void {
  const seg = join(dir, "ledger", `seg-${Math.floor(Math.random() * 3)}.dat`);
  writeFileSync(seg, Buffer.concat([readFileSync(seg), randomBytes(Math.round(48 * 1024 * scale))]));
  for (let k = 0; k < 2; k++)
    writeRandomFile(
      join(dir, "state", `page-${Math.floor(Math.random() * 6)}.db`),
      Math.round(80 * 1024 * scale),
    );
}

/** The backup source of a tree made by {@link makeSourceTree}. */
export function sourceOf(dir: string): BackupSource {
  return {
    sourceId: "fault-node",
    location: dir,
    components: [
      {
        name: "ledger",
        dataClass: "ledger",
        rootDir: dir,
        include: ["ledger"],
        appendOnly: (p) => p.endsWith(".dat"),
      },
      { name: "state", dataClass: "state", rootDir: dir, include: ["state"] },
      { name: "keys", dataClass: "keys", rootDir: dir, include: ["keys"] },
    ],
  };
}

/**
 * Every entry under `dir` (symlinks not followed) as `type mode content`, keyed by
 * `/`-separated relative path; undefined if `dir` does not exist.
 */
export function digestTree(dir: string): Map<string, string> | undefined {
  try {
    lstatSync(dir);
  } catch {
    return undefined;
  }
  const out = new Map<string, string>();
  const visit = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const p = rel === "" ? name : `${rel}/${name}`;
      const abs = join(dir, p);
      const st = lstatSync(abs);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out.set(p, `symlink ${readlinkSync(abs)}`);
      else if (st.isDirectory()) {
        out.set(p, `dir ${mode}`);
        visit(p);
      } else out.set(p, `file ${mode} ${createHash("sha256").update(readFileSync(abs)).digest("hex")}`);
    }
  };
  visit("");
  return out;
}

/** Whether two tree digests are equal. */
export function sameTree(a: Map<string, string> | undefined, b: Map<string, string> | undefined): boolean {
  if (!a || !b || a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** The first difference between two tree digests, for assertion messages. */
export function treeDiff(a: Map<string, string> | undefined, b: Map<string, string> | undefined): string {
  if (!a || !b) return `${a ? "present" : "missing"} vs ${b ? "present" : "missing"}`;
  for (const [k, v] of a) if (b.get(k) !== v) return `${k}: ${v} vs ${b.get(k) ?? "absent"}`;
  for (const k of b.keys()) if (!a.has(k)) return `${k}: absent vs ${b.get(k)}`;
  return "equal";
}
