/**
 * Restore: rebuild a snapshot's components under a target directory. The tree is written
 * into a staging directory beside the target (each file as `<name>.partial` until all its
 * chunks are in and fsynced), checked, then swapped in (restore-swap.ts). A restore
 * killed at any instant is resumed by running it again: finished files are kept.
 *
 * `delta` reads the files already at the target and takes every chunk they still hold from
 * there, fetching only the chunks that differ from the repository.
 */
import { rmSync } from "node:fs";
import { chmod, lstat, open as openFile, rename, symlink, utimes } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { crashPoint } from "../util/crash-points.js";
import { errorMessage, isNoSpace } from "../util/errors.js";
import { fsyncDir } from "../util/fs-atomic.js";
import { mapLimit } from "../util/map-limit.js";
import { BlobReader } from "./blob-reader.js";
import type { ChunkLocation } from "./chunk-index.js";
import { VaultError, VaultErrorCode } from "./errors.js";
import { RepoLock } from "./lock.js";
import type { Repository } from "./repository.js";
import { checkTree, symlinkStaysInside } from "./restore-paths.js";
import { checkStaged, localChunks, pickComponents, preflight, rootsOf } from "./restore-plan.js";
import {
  checkSpace,
  completeFiles,
  dropForeignStaging,
  MARKER,
  mkdirUnder,
  prepareStaging,
} from "./restore-staging.js";
import { finishPendingSwap, swapIntoPlace } from "./restore-swap.js";
import type { FileNode } from "./snapshot.js";

export interface RestoreOptions {
  /** Components to restore; all by default. The others at the target are left alone. */
  components?: string[];
  /** Take chunks still present in the target's files from there. */
  delta?: boolean;
  /** Restore even if the snapshot fails verification, writing what can be read. */
  force?: boolean;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  lockWaitMs?: number;
}

export interface RestoreResult {
  snapshotId: string;
  target: string;
  components: string[];
  /** Where the data that was at the target now is. */
  keptAside?: string;
  files: number;
  bytes: number;
  /** Bytes read from the repository (after decompression). */
  fetchedBytes: number;
  /** Bytes taken from the target's own files (delta) or a resumed staging tree. */
  reusedBytes: number;
  /** Loud notes: forced past damage, symlinks not created. */
  warnings: string[];
  elapsedMs: number;
}

interface Dest {
  file: PendingFile;
  offset: number;
  loc: ChunkLocation;
}

interface PendingFile {
  node: FileNode;
  staged: string;
  remaining: number;
  fh?: Awaited<ReturnType<typeof openFile>> | undefined;
  /**
   * The file's last write: writes to one file go one at a time, because concurrent
   * buffered writes to one inode only spin on its lock in the kernel (measured: 9% of a
   * restore's CPU).
   */
  writing: Promise<unknown>;
}

// Packs worked on at once, and blobs of each read and decoded at once: enough to keep the
// thread pool (decryption, hashing, decompression) and the disk busy on two cores, while
// holding at most 2 × 6 chunks in memory.
const PACKS_IN_FLIGHT = 2;
const BLOBS_IN_FLIGHT = 2;

export async function restore(
  repo: Repository,
  ref: string,
  targetDir: string,
  o: RestoreOptions = {},
): Promise<RestoreResult> {
  const t0 = Date.now();
  // Resolved: with a trailing slash, `<target>.restore-…` would name a folder inside it.
  const target = resolve(targetDir);
  const lock = await RepoLock.acquire(repo.backend, {
    exclusive: false,
    op: "restore",
    waitMs: o.lockWaitMs ?? 0,
  });
  const files: PendingFile[] = [];
  const completions: Promise<void>[] = [];
  const cleanup: (() => Promise<void>)[] = [];
  // Known once the snapshot is: for the message of a disk that fills up meanwhile.
  let staging: string | undefined;
  let snapshotId: string | undefined;
  try {
    const finished = finishPendingSwap(target);
    const snap = await repo.resolveSnapshot(ref);
    if ("problem" in snap)
      throw new VaultError(
        { code: VaultErrorCode.ObjectCorrupt, snapshotId: snap.id },
        `Cannot restore snapshot ${snap.id}: ${snap.problem}; choose another snapshot (\`chainvault snapshots\`)`,
      );
    snapshotId = snap.id;
    const m = snap.manifest;
    const chosen = pickComponents(m, o.components, snap.id);
    const nodes = chosen.flatMap((c) => c.files.map((f) => ({ f, dataClass: c.dataClass })));
    checkTree(
      nodes.map((n) => n.f),
      snap.id,
    );
    const warnings: string[] = [];
    if (finished) warnings.push(`finished an interrupted restore of ${target} first`);
    const { index } = await repo.loadIndex();
    cleanup.push(async () => index.close());
    await preflight(repo, index, snap.id, nodes, o.force === true, warnings);

    staging = `${target}.restore-${snap.id.slice(0, 16)}`;
    dropForeignStaging(staging, snap.id);
    const complete = await completeFiles(staging, nodes);
    await checkSpace(staging, target, snap.id, nodes, complete);
    prepareStaging(staging, snap.id);
    const totalBytes = nodes.reduce((s, n) => s + n.f.sizeBytes, 0);
    const stats = { done: 0, fetched: 0, reused: 0 };
    const progress = (n: number): void => {
      stats.done += n;
      o.onProgress?.(stats.done, totalBytes);
    };

    // Directories first, so every file has its parent; modes and times are set at the end.
    for (const { f } of nodes) if (f.type === "dir") await mkdirUnder(staging, f.path, 0o700);
    const byPack = new Map<string, { loc: ChunkLocation; dataClass: string; dests: Dest[] }>();
    for (const { f, dataClass } of nodes) {
      if (f.type !== "file") continue;
      const staged = join(staging, f.path);
      await mkdirUnder(staging, dirname(f.path), 0o700);
      if (complete.has(f.path)) {
        stats.reused += f.sizeBytes;
        progress(f.sizeBytes);
        continue;
      }
      const pf: PendingFile = { node: f, staged, remaining: 0, writing: Promise.resolve() };
      files.push(pf);
      const local = o.delta ? await localChunks(repo, dataClass, join(target, f.path)) : undefined;
      pf.fh = await openFile(`${staged}.partial`, "w", 0o600);
      let offset = 0;
      for (const id of f.chunks ?? []) {
        const loc = index.get(Buffer.from(id, "hex"));
        const len = loc?.entry.rawLength ?? 0;
        const here = local?.get(id);
        if (here && local) {
          const b = Buffer.allocUnsafe(here.length);
          await local.fh.read(b, 0, here.length, here.offset);
          await pf.fh.write(b, 0, b.length, offset);
          stats.reused += b.length;
          progress(b.length);
        } else if (loc) {
          pf.remaining++;
          let g = byPack.get(loc.pack.name);
          if (!g) {
            g = { loc, dataClass, dests: [] };
            byPack.set(loc.pack.name, g);
          }
          g.dests.push({ file: pf, offset, loc });
        } else {
          warnings.push(`${f.path}: chunk ${id.slice(0, 16)} is missing; ${len} bytes left as zeros`);
        }
        offset += here ? here.length : len;
      }
      await local?.fh.close();
      if (pf.remaining === 0) await completeFile(pf);
    }

    const blobs = new BlobReader(repo, PACKS_IN_FLIGHT * BLOBS_IN_FLIGHT);
    cleanup.push(() => blobs.close());
    await mapLimit([...byPack.values()], PACKS_IN_FLIGHT, async (g) => {
      const pack = g.loc.pack;
      // The destinations of each blob: one read and one decode however many files use it.
      const byBlob = new Map<string, Dest[]>();
      for (const d of g.dests) {
        const k = d.loc.entry.id.toString("latin1");
        const list = byBlob.get(k);
        if (list) list.push(d);
        else byBlob.set(k, [d]);
      }
      await mapLimit([...byBlob.values()], BLOBS_IN_FLIGHT, async (dests) => {
        const e = dests[0]!.loc.entry;
        await blobs.with(g.dataClass, pack, e, async (data) => {
          if (typeof data === "string") {
            const paths = dests.map((d) => d.file.node.path).join(", ");
            const msg = `chunk ${e.id.toString("hex").slice(0, 16)} of ${paths} in pack ${pack.name.slice(0, 16)}: ${data}`;
            if (!o.force)
              throw new VaultError(
                { code: VaultErrorCode.VerifyFailed, snapshotId: snap.id, path: dests[0]!.file.node.path },
                `Cannot restore snapshot ${snap.id}: ${msg}; the target was not touched. Run \`chainvault verify --read-data\`, restore an older snapshot, or pass --force to write what can be read`,
              );
            warnings.push(`${msg}; bytes left as zeros`);
          }
          for (const d of dests) {
            if (typeof data !== "string") {
              const fh = d.file.fh!;
              const write = d.file.writing.then(() => fh.write(data, 0, data.length, d.offset));
              d.file.writing = write.catch(() => undefined);
              await write;
              stats.fetched += data.length;
              progress(data.length);
            }
            // A finished file is fsynced and renamed off the fetch path: the next blobs do
            // not wait for the disk. Every completion is awaited before the tree is checked.
            if (--d.file.remaining === 0) {
              const done = completeFile(d.file);
              // Awaited below; observed here so a failure is not an unhandled rejection meanwhile.
              done.catch(() => undefined);
              completions.push(done);
            }
          }
        });
      });
    });

    for (const { f } of nodes) {
      if (f.type !== "symlink") continue;
      const at = join(staging, f.path);
      if (!symlinkStaysInside(f.path, f.target ?? "")) {
        warnings.push(`symlink ${f.path} -> ${f.target} points outside the target and was not created`);
        continue;
      }
      if (!(await lstat(at).catch(() => undefined))) {
        await mkdirUnder(staging, dirname(f.path), 0o700);
        await symlink(f.target ?? "", at);
      }
    }
    for (const { f } of [...nodes].reverse())
      if (f.type === "dir") {
        const at = join(staging, f.path);
        await chmod(at, f.mode);
        await utimes(at, f.mtimeMs / 1000, f.mtimeMs / 1000);
      }
    for (const c of completions) await c;
    await checkStaged(
      staging,
      nodes.map((n) => n.f),
      snap.id,
      o.force === true,
      warnings,
    );
    crashPoint("vault.restore-staged");
    rmSync(join(staging, MARKER), { force: true });
    fsyncDir(staging);
    const roots = rootsOf(nodes.map((n) => n.f));
    const keptAside = swapIntoPlace(target, staging, roots);
    return {
      snapshotId: snap.id,
      target,
      components: chosen.map((c) => c.name),
      ...(keptAside ? { keptAside } : {}),
      files: nodes.filter((n) => n.f.type === "file").length,
      bytes: totalBytes,
      fetchedBytes: stats.fetched,
      reusedBytes: stats.reused,
      warnings,
      elapsedMs: Date.now() - t0,
    };
  } catch (err) {
    if (isNoSpace(err) && staging)
      throw new VaultError(
        { code: VaultErrorCode.NoSpace, snapshotId, target, staging },
        `Cannot restore snapshot ${snapshotId} into ${target}: the disk holding ${staging} is full (${errorMessage(err)}). ${target} is unchanged. Free space and run the restore again to resume (the files finished so far are kept in ${staging}), or delete ${staging} to give up`,
      );
    throw err;
  } finally {
    // A refused restore leaves no handle open on its staging tree.
    await Promise.allSettled(completions);
    for (const pf of files) await pf.fh?.close().catch(() => undefined);
    for (const f of cleanup) await f();
    await repo.backend.releaseIdle?.();
    await lock.release();
  }
}

async function completeFile(pf: PendingFile): Promise<void> {
  const fh = pf.fh!;
  await fh.truncate(pf.node.sizeBytes);
  await fh.sync();
  await fh.close();
  pf.fh = undefined;
  const partial = `${pf.staged}.partial`;
  await chmod(partial, pf.node.mode);
  await utimes(partial, pf.node.mtimeMs / 1000, pf.node.mtimeMs / 1000);
  await rename(partial, pf.staged);
}
