/**
 * Verification, in three levels, each recorded on every snapshot it covered:
 * - structure: config, key files, index objects and manifests decode and authenticate,
 *   manifests' signatures verify, and every chunk a snapshot needs is indexed in a pack
 *   that is stored at the size the index gives;
 * - data: every pack those snapshots use (or a rotating subset) is read whole, its header
 *   checked against the index, and every chunk authenticated, decompressed and hashed;
 * - chain: the caller's check (a node adapter's) of each snapshot restored into a scratch
 *   directory: the repository itself knows nothing of chains.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mapLimit } from "../util/map-limit.js";
import { BlobReader } from "./blob-reader.js";
import type { ChunkIndex, PackMeta } from "./chunk-index.js";
import { decodeKeyFile } from "./keyfile.js";
import { RepoLock } from "./lock.js";
import { packObjectName, readPackHeader } from "./pack.js";
import type { Repository, VerificationRecord } from "./repository.js";
import { restore } from "./restore.js";
import type { Manifest } from "./snapshot.js";

// Blobs read and checked at once per pack, two packs at once: reads and decompression on
// the thread pool overlap the main thread's decryption and hashing.
const BLOBS_IN_FLIGHT = 3;

export interface VerifyOptions {
  /** Snapshot ids or `latest`; all snapshots when empty. */
  snapshots?: string[];
  /** Read every pack the snapshots use. */
  readData?: boolean;
  /** Read this percentage of those packs, a different part each run. */
  readDataSubsetPercent?: number;
  /** Restore each snapshot into a scratch directory and run this check on it. */
  chainCheck?: (dir: string, manifest: Manifest) => Promise<{ ok: boolean; detail: string }>;
  /** Where scratch restores go (default: the system temp directory). */
  scratchDir?: string;
  onProgress?: (done: number, total: number, what: string) => void;
}

export interface SnapshotVerdict {
  id: string;
  time?: string;
  ok: boolean;
  levels: Partial<Record<VerificationRecord["level"], boolean>>;
  problems: string[];
}

export interface VerifyResult {
  ok: boolean;
  /** Damage not tied to one snapshot: key files, index objects, unreadable packs. */
  repoProblems: string[];
  snapshots: SnapshotVerdict[];
  packsRead: number;
  chunksRead: number;
  bytesRead: number;
  elapsedMs: number;
}

export async function verify(repo: Repository, o: VerifyOptions = {}): Promise<VerifyResult> {
  const t0 = Date.now();
  const lock = await RepoLock.acquire(repo.backend, { exclusive: false, op: "verify" });
  let loaded: ChunkIndex | undefined;
  try {
    const repoProblems: string[] = [];
    for (const k of await repo.backend.list("keys/"))
      if (!decodeKeyFile(await repo.backend.get(k.name))) repoProblems.push(`key file ${k.name} is damaged`);
    const { index, damaged } = await repo.loadIndex();
    loaded = index;
    for (const d of damaged) repoProblems.push(`index object ${d.name} ${d.problem}`);
    const stored = new Map((await repo.backend.list("data/")).map((x) => [x.name, x.sizeBytes]));

    const all = await repo.listSnapshots();
    const wanted = await selectSnapshots(repo, all, o.snapshots);
    const verdicts: SnapshotVerdict[] = [];
    const packsOf = new Map<string, Set<PackMeta>>();
    for (const s of wanted) {
      const v: SnapshotVerdict = { id: s.id, ok: true, levels: {}, problems: [] };
      verdicts.push(v);
      if ("problem" in s) {
        v.problems.push(`manifest: ${s.problem}`);
        continue;
      }
      v.time = s.manifest.time;
      const packs = new Set<PackMeta>();
      packsOf.set(s.id, packs);
      for (const c of s.manifest.components)
        for (const f of c.files)
          for (const id of f.chunks ?? []) {
            const loc = index.get(Buffer.from(id, "hex"));
            if (!loc) {
              v.problems.push(`${c.name}/${f.path}: chunk ${id.slice(0, 16)} is in no index`);
              continue;
            }
            packs.add(loc.pack);
          }
      for (const p of packs) {
        const name = packObjectName(p.dataClass, p.name);
        const size = stored.get(name);
        if (size === undefined) v.problems.push(`pack ${name} is missing`);
        else if (size !== p.sizeBytes)
          v.problems.push(`pack ${name} is ${size} bytes, the index says ${p.sizeBytes}`);
      }
    }
    for (const v of verdicts) v.levels.structure = v.problems.length === 0 && repoProblems.length === 0;

    const counters = { packsRead: 0, chunksRead: 0, bytesRead: 0 };
    if (o.readData || o.readDataSubsetPercent !== undefined) {
      const used = new Set<PackMeta>();
      for (const ps of packsOf.values()) for (const p of ps) used.add(p);
      let list = [...used].sort((a, b) => a.name.localeCompare(b.name));
      if (!o.readData && o.readDataSubsetPercent !== undefined)
        list = await rotatingSubset(repo, list, o.readDataSubsetPercent);
      const bad = await readPacks(repo, index, list, stored, counters, o.onProgress);
      for (const v of verdicts) {
        const packs = packsOf.get(v.id);
        if (!packs) continue;
        const before = v.problems.length;
        for (const p of packs) {
          const problem = bad.get(p.name);
          if (problem) v.problems.push(problem);
        }
        v.levels.data = v.problems.length === before && v.levels.structure === true;
      }
    }

    if (o.chainCheck)
      for (const s of wanted) {
        if (!("manifest" in s)) continue;
        const v = verdicts.find((x) => x.id === s.id)!;
        const scratch = await mkdtemp(join(o.scratchDir ?? tmpdir(), "chainvault-verify-"));
        try {
          const target = join(scratch, "restore");
          await restore(repo, s.id, target);
          const r = await o.chainCheck(target, s.manifest);
          v.levels.chain = r.ok;
          if (!r.ok) v.problems.push(`chain: ${r.detail}`);
        } catch (err) {
          v.levels.chain = false;
          v.problems.push(`chain: ${(err as Error).message}`);
        } finally {
          await rm(scratch, { recursive: true, force: true });
        }
      }

    const time = new Date().toISOString();
    for (const v of verdicts) {
      v.ok = v.problems.length === 0 && repoProblems.length === 0;
      if (!all.some((s) => s.id === v.id && "manifest" in s)) continue;
      for (const [level, ok] of Object.entries(v.levels) as [VerificationRecord["level"], boolean][])
        await repo.writeVerification({
          snapshotId: v.id,
          level,
          ok,
          time,
          detail: ok ? "ok" : [...repoProblems, ...v.problems].slice(0, 5).join("; "),
        });
    }
    return {
      ok: repoProblems.length === 0 && verdicts.every((v) => v.ok),
      repoProblems,
      snapshots: verdicts,
      ...counters,
      elapsedMs: Date.now() - t0,
    };
  } finally {
    loaded?.close();
    await repo.backend.releaseIdle?.();
    await lock.release();
  }
}

async function selectSnapshots(
  repo: Repository,
  all: Awaited<ReturnType<Repository["listSnapshots"]>>,
  refs: string[] | undefined,
): Promise<typeof all> {
  if (!refs || refs.length === 0) return all;
  const out: typeof all = [];
  for (const r of refs) out.push(await repo.resolveSnapshot(r));
  return out;
}

/** The next slice of `percent` of the packs: the slice index advances with each data run. */
async function rotatingSubset(repo: Repository, packs: PackMeta[], percent: number): Promise<PackMeta[]> {
  if (!(percent > 0 && percent <= 100))
    throw new RangeError(`--read-data-subset must be in (0, 100], got ${percent}`);
  const slices = Math.max(1, Math.round(100 / percent));
  const runs = (await repo.backend.list("verifications/")).filter((o) => o.name.includes("-data-")).length;
  const slice = runs % slices;
  return packs.filter((_, i) => i % slices === slice);
}

/**
 * Reads every byte of each pack and checks it: the trailer and sealed header (against the
 * index), then each blob (authenticated, decompressed, hashed). Blobs are read one range at
 * a time, several at once, so a pack never sits whole in memory.
 */
async function readPacks(
  repo: Repository,
  index: ChunkIndex,
  packs: PackMeta[],
  stored: Map<string, number>,
  counters: { packsRead: number; chunksRead: number; bytesRead: number },
  onProgress?: VerifyOptions["onProgress"],
): Promise<Map<string, string>> {
  const bad = new Map<string, string>();
  let done = 0;
  const blobs = new BlobReader(repo, 2 * BLOBS_IN_FLIGHT);
  try {
    await mapLimit(packs, 2, async (p) => {
      const name = packObjectName(p.dataClass, p.name);
      const size = stored.get(name);
      if (size === undefined) {
        bad.set(p.name, `pack ${name} is missing`);
        return;
      }
      const entries = await readPackHeader(repo.backend, repo.keysOf(p.dataClass).dataKey, name, size);
      counters.packsRead++;
      if (typeof entries === "string") {
        bad.set(p.name, `pack ${name}: ${entries}`);
        return;
      }
      const indexed = index.entriesOf(p.name);
      if (
        entries.length !== indexed.length ||
        entries.some(
          (e, i) =>
            !e.id.equals(indexed[i]!.id) ||
            e.offset !== indexed[i]!.offset ||
            e.length !== indexed[i]!.length,
        )
      )
        bad.set(p.name, `pack ${name}: its header disagrees with the index`);
      await mapLimit(entries, BLOBS_IN_FLIGHT, (e) =>
        blobs.check(p.dataClass, p, e).then((r) => {
          counters.chunksRead++;
          if (r !== undefined && !bad.has(p.name))
            bad.set(p.name, `pack ${name}: chunk ${e.id.toString("hex").slice(0, 16)} ${r}`);
        }),
      );
      // Trailer, header and every blob: the whole pack was read.
      counters.bytesRead += size;
      onProgress?.(++done, packs.length, "packs");
    });
  } finally {
    await blobs.close();
  }
  return bad;
}
