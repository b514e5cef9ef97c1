/**
 * Checkpoints: a consistent, read-only copy of a node's ledger and state at one height in
 * `checkpoints/<id>`, for backups, and their release. See docs/storage.md, section 8.
 */
import { randomBytes } from "node:crypto";
import { existsSync, linkSync, mkdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { copyFilePrefix, fsyncDir, writeFileAtomic } from "../../util/fs-atomic.js";
import { hex } from "../crypto.js";
import type { ChainView } from "./chain-types.js";

/** A consistent, read-only copy of the node's data at one height, for backups. */
export interface Checkpoint {
  id: string;
  dir: string;
  height: number;
  headHash: string;
  stateRoot: string;
  createdAtMs: number;
  files: { path: string; sizeBytes: number; sealed: boolean }[];
}

/**
 * The body of {@link ChainStore.checkpoint}, run under the store's mutex so that ledger,
 * index and state describe the same height.
 */
export function writeCheckpoint(chain: ChainView): Checkpoint {
  const createdAtMs = Date.now();
  const tip = chain.tip();
  const id = `cp-${tip.height}-${createdAtMs}-${randomBytes(3).toString("hex")}`;
  const dir = join(chain.opts.dataDir, "checkpoints", id);
  mkdirSync(join(dir, "ledger"), { recursive: true });
  mkdirSync(join(dir, "state"), { recursive: true });
  const files: Checkpoint["files"] = [];
  for (const s of chain.ledger.segments()) {
    const dst = join(dir, "ledger", s.path.split("/").pop()!);
    if (s.sealed) linkSync(s.path, dst);
    else copyFilePrefix(s.path, dst, s.sizeBytes);
    files.push({ path: `ledger/${s.path.split("/").pop()}`, sizeBytes: s.sizeBytes, sealed: s.sealed });
  }
  const idxBytes = 16 + tip.height * 64;
  copyFilePrefix(
    join(chain.opts.dataDir, "ledger", "heights.idx"),
    join(dir, "ledger", "heights.idx"),
    idxBytes,
  );
  files.push({ path: "ledger/heights.idx", sizeBytes: idxBytes, sealed: false });
  const statePath = join(dir, "state", "state.db");
  chain.state.snapshotTo(statePath);
  fsyncDir(statePath);
  files.push({ path: "state/state.db", sizeBytes: statSync(statePath).size, sealed: false });
  // The genesis travels with the data: the copy names the chain it belongs to.
  writeFileAtomic(join(dir, "genesis.json"), `${JSON.stringify(chain.genesis.doc, null, 2)}\n`);
  files.push({
    path: "genesis.json",
    sizeBytes: statSync(join(dir, "genesis.json")).size,
    sealed: false,
  });
  fsyncDir(join(dir, "ledger"));
  fsyncDir(join(dir, "state"));
  const cp: Checkpoint = {
    id,
    dir,
    height: tip.height,
    headHash: hex(tip.hash),
    stateRoot: hex(chain.stateRoot),
    createdAtMs,
    files,
  };
  writeFileAtomic(join(dir, "checkpoint.json"), `${JSON.stringify(cp, null, 2)}\n`);
  return cp;
}

/** The body of {@link ChainStore.releaseCheckpoint}: deletes checkpoint `id` of the node in `dataDir`. */
export function releaseCheckpoint(dataDir: string, id: string): boolean {
  if (!/^cp-\d+-\d+-[0-9a-f]{6}$/.test(id))
    throw new TypeError(`Invalid checkpoint id ${JSON.stringify(id)}`);
  const dir = join(dataDir, "checkpoints", id);
  if (!existsSync(dir)) return false;
  rmSync(dir, { recursive: true, force: true });
  return true;
}
