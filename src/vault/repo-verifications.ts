/**
 * Verification records: `verifications/<snap>/<name>`, sealed, one per verify run and level,
 * written by verify.ts and read back as the latest of each level per snapshot. Repository
 * (repository.ts) calls these; they take the parts of it they need, so this module does not
 * import it back.
 */

import { randomBytes } from "node:crypto";
import { mapLimit } from "../util/map-limit.js";
import type { Backend } from "./backend.js";
import { open, seal } from "./crypto.js";

const VERIFICATION_AAD = Buffer.from("chainvault/verification/v1");

/** One verification run's result for one snapshot and level. */
export interface VerificationRecord {
  snapshotId: string;
  level: "structure" | "data" | "chain";
  ok: boolean;
  time: string;
  detail: string;
}

/** The parts of an open repository that verification records use (Repository has them). */
export interface VerificationHolder {
  readonly backend: Backend;
  readonly master: { readonly dataKey: Buffer };
}

/** Seals and stores one verification record (Repository.writeVerification). */
export async function writeVerification(repo: VerificationHolder, r: VerificationRecord): Promise<void> {
  const name = `verifications/${r.snapshotId}/${Date.now()}-${r.level}-${randomBytes(4).toString("hex")}`;
  await repo.backend.put(name, seal(repo.master.dataKey, Buffer.from(JSON.stringify(r)), VERIFICATION_AAD));
}

/** The latest verification of each level for each snapshot. */
export async function readVerifications(
  repo: VerificationHolder,
): Promise<Map<string, Partial<Record<VerificationRecord["level"], VerificationRecord>>>> {
  const out = new Map<string, Partial<Record<VerificationRecord["level"], VerificationRecord>>>();
  const objs = await repo.backend.list("verifications/");
  await mapLimit(objs, 8, async (o) => {
    const plain = open(
      repo.master.dataKey,
      await repo.backend.get(o.name).catch(() => Buffer.alloc(0)),
      VERIFICATION_AAD,
    );
    if (!plain) return;
    const r = JSON.parse(plain.toString("utf8")) as VerificationRecord;
    const cur = out.get(r.snapshotId) ?? {};
    const prev = cur[r.level];
    if (!prev || prev.time < r.time) cur[r.level] = r;
    out.set(r.snapshotId, cur);
  });
  return out;
}
