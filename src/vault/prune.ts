/**
 * `prune`: delete data that no snapshot references, under an exclusive lock. Packs of
 * which nothing is used are deleted; partly used packs of every class but `ledger` are
 * repacked when enough of them is waste (their sealed blobs are copied as they are, never
 * decrypted); ledger packs are never repacked, so pruning costs no ledger I/O.
 *
 * Crash safety comes from the order: new packs, then a new index covering everything kept,
 * then the old index objects go, then the packs nobody needs. A crash at any point leaves
 * a repository whose snapshots all restore (at worst with extra objects for the next prune).
 */
import { crashPoint } from "../util/crash-points.js";
import { LocalBackend } from "./backends/local.js";
import { type ChunkIndex, encodeIndex, newIndexName, type PackInfo, type PackMeta } from "./chunk-index.js";
import { VaultError, VaultErrorCode } from "./errors.js";
import { RepoLock } from "./lock.js";
import { PackBuilder, packObjectName, parsePackObjectName, readPackHeader } from "./pack.js";
import type { Repository } from "./repository.js";
import { manifestChunks } from "./snapshot.js";

export interface PruneOptions {
  dryRun?: boolean;
  /** A partly used pack (not ledger) is repacked when more than this fraction of it is unused. */
  repackUnusedFraction?: number;
}

export interface PruneResult {
  packsDeleted: number;
  packsRepacked: number;
  packsAdopted: number;
  bytesFreed: number;
  indexObjects: number;
  /** Chunks that snapshots reference but no pack holds: prune cannot bring them back. */
  missingChunks: number;
  /** Packs no index names whose header does not read: left in place. */
  unreadablePacks: number;
  dryRun: boolean;
}

// 10%: repacking rewrites the used 90%, so below this the I/O would cost more than the space.
const REPACK_UNUSED_DEFAULT = 0.1;
// Packs per index object written by prune: bounds each object to a few MiB.
const PACKS_PER_INDEX = 2048;
/** The class whose packs are never rewritten. */
const NEVER_REPACK = "ledger";

export async function prune(repo: Repository, o: PruneOptions = {}): Promise<PruneResult> {
  const lock = await RepoLock.acquire(repo.backend, { exclusive: true, op: "prune" });
  let loaded: ChunkIndex | undefined;
  try {
    const snaps = await repo.listSnapshots();
    const damaged = snaps.filter((s) => "problem" in s);
    if (damaged.length > 0)
      throw new VaultError(
        { code: VaultErrorCode.ObjectCorrupt, snapshots: damaged.map((s) => s.id) },
        `Cannot prune ${repo.backend.location}: snapshot ${damaged[0]!.id} is damaged (${"problem" in damaged[0]! ? damaged[0]!.problem : ""}), so the data it uses is unknown; remove it with \`chainvault forget\` or restore the repository from a copy first`,
      );
    const used = new Set<string>();
    for (const s of snaps)
      if ("manifest" in s)
        for (const c of manifestChunks(s.manifest)) used.add(Buffer.from(c.id, "hex").toString("latin1"));

    const { index, damaged: badIndex } = await repo.loadIndex();
    loaded = index;
    const stored = await repo.backend.list("data/");
    // Packs no index names: left by a backup that died before its index, or named by a
    // damaged index object. Their headers say what they hold; used ones are adopted.
    const adopted: PackInfo[] = [];
    const orphans: { name: string; sizeBytes: number }[] = [];
    // Unindexed packs whose header does not read are left alone: prune deletes only what it
    // can prove unused, and verify reports them.
    let unreadable = 0;
    for (const obj of stored) {
      const parsed = parsePackObjectName(obj.name);
      if (!parsed || index.packs.has(parsed.name)) continue;
      // Only the trailer and header are read: what a pack holds is listed there.
      const entries = await readPackHeader(
        repo.backend,
        repo.keysOf(parsed.dataClass).dataKey,
        obj.name,
        obj.sizeBytes,
      ).catch((err: unknown) => (err as Error).message);
      if (typeof entries === "string") unreadable++;
      else if (entries.some((e) => used.has(e.id.toString("latin1")))) {
        const p = { name: parsed.name, dataClass: parsed.dataClass, sizeBytes: obj.sizeBytes, entries };
        adopted.push(p);
        index.add(p);
      } else orphans.push({ name: obj.name, sizeBytes: obj.sizeBytes });
    }

    const keep: PackMeta[] = [];
    const drop: PackMeta[] = [];
    const repack: PackMeta[] = [];
    const placed = new Set<string>();
    const ratio = o.repackUnusedFraction ?? REPACK_UNUSED_DEFAULT;
    // Chunks in packs that stay as they are: a repack copies none of these.
    const kept = new Set<string>();
    for (const p of index.packs.values()) {
      let usedBytes = 0;
      const entries = index.entriesOf(p.name);
      for (const e of entries) {
        const k = e.id.toString("latin1");
        if (used.has(k) && !placed.has(k)) {
          usedBytes += e.length;
          placed.add(k);
        }
      }
      if (usedBytes === 0) drop.push(p);
      else if (p.dataClass !== NEVER_REPACK && 1 - usedBytes / p.sizeBytes > ratio) repack.push(p);
      else {
        keep.push(p);
        for (const e of entries) kept.add(e.id.toString("latin1"));
      }
    }
    let missing = 0;
    for (const k of used) if (!placed.has(k)) missing++;
    const bytesFreed = [...drop, ...repack, ...orphans].reduce((s, p) => s + p.sizeBytes, 0);
    const result: PruneResult = {
      packsDeleted: drop.length + orphans.length,
      packsRepacked: repack.length,
      packsAdopted: adopted.length,
      bytesFreed,
      indexObjects: 0,
      missingChunks: missing,
      unreadablePacks: unreadable,
      dryRun: o.dryRun === true,
    };
    if (o.dryRun) return result;

    // Repack: copy the used sealed blobs into new packs of the same class.
    const fresh: PackInfo[] = [];
    const builders = new Map<string, PackBuilder>();
    const flushBuilder = async (b: PackBuilder): Promise<void> => {
      const { parts, sizeBytes } = b.finish(repo.keysOf(b.dataClass).dataKey);
      await repo.backend.put(packObjectName(b.dataClass, b.name), parts);
      fresh.push({ name: b.name, dataClass: b.dataClass, sizeBytes, entries: b.entries });
    };
    for (const p of repack) {
      const bytes = await repo.backend.get(packObjectName(p.dataClass, p.name));
      for (const e of index.entriesOf(p.name)) {
        const k = e.id.toString("latin1");
        if (!used.has(k) || kept.has(k)) continue;
        kept.add(k);
        let b = builders.get(p.dataClass);
        if (!b) {
          b = new PackBuilder(p.dataClass);
          builders.set(p.dataClass, b);
        }
        await b.add(e.id, Buffer.from(bytes.subarray(e.offset, e.offset + e.length)), e.rawLength, e.flags);
        if (b.sizeBytes >= repo.config.packTargetBytes) {
          builders.delete(p.dataClass);
          await flushBuilder(b);
        }
      }
    }
    for (const b of builders.values()) if (b.entries.length > 0) await flushBuilder(b);
    crashPoint("vault.prune-repacked");

    const oldIndex = [...index.files.keys()];
    // One slice of packs at a time: a large index is never whole in memory here either.
    const all: (PackMeta | PackInfo)[] = [...keep, ...fresh];
    for (let i = 0; i < all.length; i += PACKS_PER_INDEX) {
      const slice = all.slice(i, i + PACKS_PER_INDEX).map((p) => ("entries" in p ? p : index.packInfo(p)));
      await repo.backend.put(newIndexName(), encodeIndex(repo.master.dataKey, slice));
      result.indexObjects++;
    }
    crashPoint("vault.prune-indexed");
    for (const name of oldIndex) await repo.backend.delete(name);
    for (const b of badIndex) await repo.backend.delete(b.name);
    crashPoint("vault.prune-old-index-deleted");
    for (const p of [...drop, ...repack]) await repo.backend.delete(packObjectName(p.dataClass, p.name));
    for (const x of orphans) await repo.backend.delete(x.name);
    const live = new Set(snaps.map((s) => s.id));
    for (const v of await repo.backend.list("verifications/")) {
      const snap = v.name.split("/")[1] ?? "";
      if (!live.has(snap)) await repo.backend.delete(v.name);
    }
    if (repo.backend instanceof LocalBackend) await repo.backend.removeStaleTemporaries();
    return result;
  } finally {
    loaded?.close();
    await lock.release();
  }
}
