/**
 * A repository's snapshots: `snapshots/<sha256>`, signed, sealed manifests (snapshot.ts),
 * listed, read, written and found by reference. Repository (repository.ts) calls these with
 * itself; they take the parts of it they need, so this module does not import it back.
 */

import type { KeyObject } from "node:crypto";
import { mapLimit } from "../util/map-limit.js";
import type { Backend } from "./backend.js";
import { VaultError, VaultErrorCode } from "./errors.js";
import { decodeSnapshot, encodeSnapshot, type Manifest } from "./snapshot.js";

/** A snapshot as listed: its id and manifest, or why it cannot be trusted. */
export type SnapshotEntry = { id: string; manifest: Manifest } | { id: string; problem: string };

/** The parts of an open repository that snapshot storage uses (Repository has them). */
export interface SnapshotHolder {
  readonly backend: Backend;
  readonly config: { readonly signPublicKey: string };
  readonly master: { readonly dataKey: Buffer };
  readonly signKey: KeyObject;
  readSnapshot(id: string): Promise<SnapshotEntry>;
  listSnapshots(): Promise<SnapshotEntry[]>;
}

/** Every snapshot, decoded and checked; damaged ones carry a `problem`. */
export async function listSnapshots(repo: SnapshotHolder): Promise<SnapshotEntry[]> {
  const objs = await repo.backend.list("snapshots/");
  const out: SnapshotEntry[] = [];
  await mapLimit(objs, 8, async (o) => {
    out.push(await repo.readSnapshot(o.name.slice("snapshots/".length)));
  });
  return out.sort((a, b) =>
    "manifest" in a && "manifest" in b
      ? a.manifest.time.localeCompare(b.manifest.time)
      : a.id.localeCompare(b.id),
  );
}

/** One snapshot, decoded and checked (Repository.readSnapshot). */
export async function readSnapshot(repo: SnapshotHolder, id: string): Promise<SnapshotEntry> {
  const bytes = await repo.backend.get(`snapshots/${id}`);
  const r = decodeSnapshot(repo.master.dataKey, Buffer.from(repo.config.signPublicKey, "hex"), id, bytes);
  return "manifest" in r ? { id, manifest: r.manifest } : { id, problem: r.problem };
}

/** Signs, seals and stores a manifest; returns its snapshot id (Repository.writeSnapshot). */
export async function writeSnapshot(repo: SnapshotHolder, m: Manifest): Promise<string> {
  const { id, bytes } = encodeSnapshot(repo.master.dataKey, repo.signKey, m);
  await repo.backend.put(`snapshots/${id}`, bytes);
  return id;
}

/**
 * Finds a snapshot by `latest`, a full id or a unique prefix of at least 6 characters;
 * throws SnapshotMissing otherwise.
 */
export async function resolveSnapshot(
  repo: SnapshotHolder,
  ref: string,
  filter?: (m: Manifest) => boolean,
): Promise<SnapshotEntry> {
  const all = await repo.listSnapshots();
  if (ref === "latest") {
    const good = all.filter(
      (s): s is { id: string; manifest: Manifest } => "manifest" in s && (!filter || filter(s.manifest)),
    );
    const last = good.at(-1);
    if (last) return last;
  } else if (/^[0-9a-f]{6,64}$/.test(ref)) {
    const hits = all.filter((s) => s.id.startsWith(ref));
    if (hits.length === 1) return hits[0]!;
    if (hits.length > 1)
      throw new VaultError(
        { code: VaultErrorCode.SnapshotMissing, ref },
        `Snapshot prefix ${ref} is ambiguous in ${repo.backend.location}: it matches ${hits.length} snapshots; give more characters`,
      );
  }
  throw new VaultError(
    { code: VaultErrorCode.SnapshotMissing, ref, location: repo.backend.location },
    `No snapshot ${ref} in repository ${repo.backend.location}; run \`chainvault snapshots --repo ${repo.backend.location}\` to list them`,
  );
}
