/**
 * Backups of reference-chain nodes: the node adapter says what to read and what the node
 * holds (the anchor); the vault stores it; the ledger validator proves a snapshot restores
 * into a valid chain that matches its anchor.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { nodeBackupSource } from "../adapters/node-backup-source.js";
import { Genesis } from "../chain/genesis.js";
import { validateNodeData } from "../ledger/validate.js";
import { type BackupOptions, type BackupResult, backup } from "../vault/backup.js";
import type { Repository } from "../vault/repository.js";
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

/** Backs up a node (data directory or URL) into `repo`. */
export async function backupNode(
  repo: Repository,
  ref: string,
  o: NodeBackupOptions = {},
): Promise<NodeBackupResult> {
  const src = await nodeBackupSource(ref, {
    ...(o.components ? { components: o.components } : {}),
    ...(o.adminToken ? { adminToken: o.adminToken } : {}),
  });
  try {
    const r = await backup(
      repo,
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
