// Shared helpers for the vault integration tests: a generated (stopped) node directory, a
// repository in a temp directory with a cheap key derivation, and snapshots of file trees
// and repository folders to compare before and after an operation.
import { createHash, randomBytes } from "node:crypto";
import {
  cpSync,
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
import { generateChain } from "../../src/chain/generator.js";
import { LocalBackend } from "../../src/vault/backends/local.js";
import type { ChunkerParams } from "../../src/vault/chunker.js";
import { Repository } from "../../src/vault/repository.js";
import type { BackupSource } from "../../src/vault/source.js";

/** scrypt at N = 1024: ~1 ms per attempt, so tests open repositories freely. */
export const TEST_KDF = { N: 1024, r: 8, p: 1 } as const;

// 8 / 32 / 128 KiB: the defaults' ratios at 1/32 the size, so a 128 KiB ledger segment
// is cut into several chunks and deduplication and delta restore have something to show.
export const SMALL_CHUNKER: ChunkerParams = { minBytes: 8 * 1024, avgBytes: 32 * 1024, maxBytes: 128 * 1024 };

// 96 KiB packs: a few MiB of node data spreads over dozens of packs per class, so prune
// has whole packs to delete and partly used ones to keep or repack.
export const SMALL_PACK_BYTES = 96 * 1024;

// 256 KiB segments: the ~1 MiB ledger spans three sealed segments and a growing one of several chunks.
const SEGMENT_BYTES = 256 * 1024;
// Few transactions with large payloads: about 1 MiB of ledger for few signatures, so one
// chain takes about a second to generate (most of it the devnet's set-up).
const BLOCKS = 200;
const TXS_PER_BLOCK = 4;
const PAYLOAD_BYTES = 1024;
// Past block slots left free after the tip, so that tests can append this many blocks.
const RESERVE_BLOCKS = 90;

/** A devnet directory whose node-0 holds a generated chain; the node is not running. */
export interface NodeFixture {
  /** The devnet directory (generateChain's `dir`, for appends). */
  devnetDir: string;
  /** node-0's data directory: what a backup reads. */
  nodeDir: string;
  height: number;
}

/** Generates a stopped node with a 200-block chain in `parentDir/net`. */
export async function makeNode(parentDir: string): Promise<NodeFixture> {
  const devnetDir = join(parentDir, "net");
  const r = await generateChain(devnetDir, {
    blocks: BLOCKS,
    txsPerBlock: TXS_PER_BLOCK,
    payloadBytes: PAYLOAD_BYTES,
    validators: 1,
    segmentBytes: SEGMENT_BYTES,
    reserveBlocks: RESERVE_BLOCKS,
  });
  return { devnetDir, nodeDir: r.nodeDir, height: r.height };
}

/** Copies a node fixture into `parentDir/net` (times and modes kept), so a test may change it. */
export function copyNode(n: NodeFixture, parentDir: string): NodeFixture {
  const devnetDir = join(parentDir, "net");
  cpSync(n.devnetDir, devnetDir, { recursive: true, preserveTimestamps: true });
  return { devnetDir, nodeDir: join(devnetDir, "node-0"), height: n.height };
}

/** Appends blocks to a node fixture's chain (the generator's append mode). */
export async function appendBlocks(n: NodeFixture, blocks: number): Promise<void> {
  const r = await generateChain(n.devnetDir, {
    blocks,
    txsPerBlock: TXS_PER_BLOCK,
    payloadBytes: PAYLOAD_BYTES,
    append: true,
  });
  n.height = r.height;
}

/** A new repository in `parentDir/<name>`, with small chunks and packs and a cheap KDF. */
export async function newRepo(
  parentDir: string,
  name = "repo",
  password = "correct horse battery staple",
): Promise<{ repo: Repository; root: string; password: string }> {
  const root = join(parentDir, name);
  const repo = await Repository.init(new LocalBackend(root), password, {
    kdf: TEST_KDF,
    chunker: SMALL_CHUNKER,
    packTargetBytes: SMALL_PACK_BYTES,
  });
  return { repo, root, password };
}

/** One entry of a file tree as a restore must reproduce it. */
export interface TreeEntry {
  type: "file" | "dir" | "symlink";
  mode: number;
  sizeBytes: number;
  mtimeMs: number;
  ino: number;
  sha256?: string;
  target?: string;
}

/** Every entry under `dir` (not following symlinks), keyed by `/`-separated relative path. */
export function treeOf(dir: string, rel = ""): Map<string, TreeEntry> {
  const out = new Map<string, TreeEntry>();
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const p = rel === "" ? name : `${rel}/${name}`;
    const abs = join(dir, p);
    const st = lstatSync(abs);
    const base = { mode: st.mode & 0o7777, sizeBytes: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
    if (st.isSymbolicLink()) out.set(p, { ...base, type: "symlink", target: readlinkSync(abs) });
    else if (st.isDirectory()) {
      out.set(p, { ...base, type: "dir" });
      for (const [k, v] of treeOf(dir, p)) out.set(k, v);
    } else
      out.set(p, {
        ...base,
        type: "file",
        sha256: createHash("sha256").update(readFileSync(abs)).digest("hex"),
      });
  }
  return out;
}

/** A tree's content and modes only: what "byte-identical with modes kept" compares. */
export function contentOf(tree: Map<string, TreeEntry>): Map<string, string> {
  return new Map(
    [...tree].map(([p, e]) => [
      p,
      `${e.type} ${e.mode.toString(8)} ${e.type === "file" ? `${e.sizeBytes} ${e.sha256}` : (e.target ?? "")}`,
    ]),
  );
}

/** The files and symlinks of a tree (optionally only those under one folder), by content and mode. */
export function filesOf(tree: Map<string, TreeEntry>, under?: string): Map<string, string> {
  return new Map(
    [...contentOf(tree)].filter(
      ([p]) => tree.get(p)!.type !== "dir" && (under === undefined || p.startsWith(`${under}/`)),
    ),
  );
}

/** Every object file of a repository with its size and mtime, to prove nothing was written. */
export function repoFiles(root: string): Map<string, string> {
  return new Map([...treeOf(root)].map(([p, e]) => [p, `${e.type} ${e.sizeBytes} ${e.mtimeMs} ${e.ino}`]));
}

/**
 * A node generated once for a whole test file, for tests to read or copy with {@link copyNode}:
 * `v1` at the generated height and, if `append` is given, `v2` with that many more blocks
 * (else `v1` again). Both are copies of one generated directory, so the files the append
 * leaves alone have the same size and mtime in both, as in one node directory over time.
 * Call in `before`, and `dispose` in `after`.
 */
export async function sharedNodes(
  name: string,
  append = 0,
): Promise<{ v1: NodeFixture; v2: NodeFixture; dispose: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), `chainvault-${name}-`));
  const dispose = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    const generated = await makeNode(join(dir, "generated"));
    const v1 = copyNode(generated, join(dir, "v1"));
    if (append === 0) return { v1, v2: v1, dispose };
    const v2 = copyNode(generated, join(dir, "v2"));
    await appendBlocks(v2, append);
    return { v1, v2, dispose };
  } catch (err) {
    dispose();
    throw err;
  }
}

/**
 * A directory of real files (random, so they neither compress nor deduplicate) and a backup
 * source over it: for tests about the repository rather than about nodes.
 */
export function makeFiles(
  parentDir: string,
  files: Record<string, number>,
): { dir: string; source: BackupSource } {
  const dir = join(parentDir, "files");
  for (const [rel, sizeBytes] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), randomBytes(sizeBytes));
  }
  return {
    dir,
    source: {
      sourceId: "files",
      location: dir,
      components: [{ name: "data", dataClass: "state", rootDir: dir, include: readdirSync(dir).sort() }],
    },
  };
}
