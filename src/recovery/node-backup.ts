/**
 * Backups of reference-chain nodes: the node adapter says what to read and what the node
 * holds (the anchor); the vault stores it; the ledger validator proves a snapshot restores
 * into a valid chain that matches its anchor.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { nodeBackupSource } from "../adapters/node-backup-source.js";
import { Genesis } from "../chain/genesis.js";
import { Watermark } from "../chain/watermark.js";
import { validateNodeData } from "../ledger/validate.js";
import { writeFileAtomic } from "../util/fs-atomic.js";
import { type BackupOptions, type BackupResult, backup } from "../vault/backup.js";
import type { Repository } from "../vault/repository.js";
import { type RestoreOptions, type RestoreResult, restore } from "../vault/restore.js";
import type { Manifest } from "../vault/snapshot.js";

export interface NodeBackupOptions extends BackupOptions {
  components?: string[];
  adminToken?: string;
}

export interface NodeBackupResult extends BackupResult {
  anchor: { height: number; headHash: string; stateRoot: string };
  /** True when the node was running and was read through a checkpoint. */
  live: boolean;
}

/**
 * Backs up a node (data directory or URL) into `repo`. The repository may still be opening
 * (its key being derived): a stopped node's anchor and files are read meanwhile, while a
 * running node is asked for a checkpoint only once the repository is open.
 */
export async function backupNode(
  repo: Repository | Promise<Repository>,
  ref: string,
  o: NodeBackupOptions = {},
): Promise<NodeBackupResult> {
  const opening = Promise.resolve(repo);
  // Observed now: a failure to open is reported below, after the source is settled.
  opening.catch(() => undefined);
  let src: Awaited<ReturnType<typeof nodeBackupSource>>;
  try {
    src = await nodeBackupSource(ref, {
      ...(o.components ? { components: o.components } : {}),
      ...(o.adminToken ? { adminToken: o.adminToken } : {}),
      beforeCheckpoint: opening,
    });
  } catch (err) {
    // A repository that cannot be opened is the first thing to fix.
    await opening;
    throw err;
  }
  try {
    const r = await backup(
      opening,
      { sourceId: src.sourceId, location: src.location, components: src.components, anchor: src.anchor },
      o,
    );
    return { ...r, anchor: src.anchor, live: src.live };
  } finally {
    await src.release();
  }
}

/**
 * The chain level of verification: the restored directory's ledger validates block by block
 * up to at least the anchored height, and at that height has the anchored head hash and
 * state root.
 */
export async function checkRestoredNode(dir: string, m: Manifest): Promise<{ ok: boolean; detail: string }> {
  const names = new Set(m.components.map((c) => c.name));
  if (!names.has("ledger") || !existsSync(join(dir, "genesis.json")))
    return {
      ok: false,
      detail: "the snapshot lacks the ledger or the genesis (config component): nothing to validate",
    };
  const genesis = Genesis.load(join(dir, "genesis.json"));
  const r = await validateNodeData(dir, genesis, { skipStateDb: !names.has("state") });
  if (!r.ok)
    return {
      ok: false,
      detail: `the restored ledger fails at height ${r.fault?.height}: ${r.fault?.message ?? "invalid"}`,
    };
  const a = m.anchor;
  if (!a) return { ok: true, detail: `valid chain to height ${r.validHeight} (the snapshot has no anchor)` };
  if (r.validHeight < Number(a.height))
    return {
      ok: false,
      detail: `the restored ledger ends at ${r.validHeight}, below the anchored height ${a.height}`,
    };
  if (r.validHeight === Number(a.height) && (r.validHash !== a.headHash || r.stateRoot !== a.stateRoot))
    return {
      ok: false,
      detail: `at height ${a.height} the restored chain has head ${r.validHash.slice(0, 16)} and state root ${r.stateRoot.slice(0, 16)}, the anchor says ${String(a.headHash).slice(0, 16)} and ${String(a.stateRoot).slice(0, 16)}`,
    };
  if (r.stateDbMatches === false)
    return { ok: false, detail: "the restored state database does not match the replayed ledger" };
  return { ok: true, detail: `valid chain to height ${r.validHeight}, anchor ${a.height} matches` };
}

/**
 * Restores a snapshot into a node's data directory without ever lowering its signing
 * watermark: a validator's `keys/watermark.json` from the backup is older than the one on
 * disk if the validator signed after the backup, and signing again at those heights would
 * be double signing. The higher of the two is kept.
 */
export async function restoreNode(
  repo: Repository,
  ref: string,
  target: string,
  o: RestoreOptions = {},
): Promise<RestoreResult & { watermarkKept?: number }> {
  const wmPath = join(target, "keys", "watermark.json");
  let before = 0;
  try {
    before = Watermark.read(wmPath).height;
  } catch {
    // A damaged watermark on disk vouches for nothing; the restored one stands.
  }
  const r = await restore(repo, ref, target, o);
  const after = existsSync(wmPath) ? Watermark.read(wmPath).height : 0;
  if (before > after && existsSync(join(target, "keys"))) {
    writeFileAtomic(wmPath, `${JSON.stringify({ height: before, updatedAtMs: Date.now() })}\n`, 0o600);
    r.warnings.push(
      `kept the signing watermark at height ${before}: the snapshot's (${after}) is older, and signing below it could double-sign`,
    );
    return { ...r, watermarkKept: before };
  }
  return r;
}
