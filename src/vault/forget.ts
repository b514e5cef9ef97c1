/**
 * `forget`: remove snapshots that a retention policy does not keep. Only snapshot objects
 * (and their verification records) are deleted; the data they used stays until `prune`.
 */
import { RepoLock } from "./lock.js";
import type { Repository } from "./repository.js";
import { applyRetention, type RetentionDecision, type RetentionPolicy } from "./retention.js";

export type { RetentionPolicy };

export interface ForgetResult {
  decisions: RetentionDecision[];
  removed: string[];
  dryRun: boolean;
}

export async function forget(
  repo: Repository,
  policy: RetentionPolicy,
  o: { dryRun?: boolean } = {},
): Promise<ForgetResult> {
  const lock = await RepoLock.acquire(repo.backend, { exclusive: !o.dryRun, op: "forget" });
  try {
    const snaps = await repo.listSnapshots();
    const inputs = snaps.flatMap((s) =>
      "manifest" in s
        ? [
            {
              id: s.id,
              time: s.manifest.time,
              tags: s.manifest.tags,
              group: `${s.manifest.host}\u0000${s.manifest.sourceId}`,
            },
          ]
        : [],
    );
    const decisions = applyRetention(inputs, policy);
    const removed = decisions.filter((d) => !d.keep).map((d) => d.id);
    if (!o.dryRun)
      for (const id of removed) {
        await repo.backend.delete(`snapshots/${id}`);
        for (const v of await repo.backend.list(`verifications/${id}`)) await repo.backend.delete(v.name);
      }
    return { decisions, removed, dryRun: o.dryRun === true };
  } finally {
    await lock.release();
  }
}
