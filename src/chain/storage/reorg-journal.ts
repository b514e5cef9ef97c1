/**
 * The redo journal `ledger/reorg.journal` that a reorganisation writes before it cuts the
 * ledger: sha256 of the body, then the domain, the ancestor's height and hash, and the new
 * branch's blocks. See docs/storage.md, section 6.4.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../../util/fs-atomic.js";
import { decodeBlock } from "../block.js";
import { sha256 } from "../crypto.js";
import { Reader, Writer } from "../encoding.js";
import { BLOCK_BYTES_MAX } from "../types.js";
import { type ImportedBlock, prepareBlock } from "./imported-block.js";

/** Name of the redo journal a reorganisation writes before it cuts the ledger. */
export const REORG_JOURNAL = "reorg.journal";

/** Where the journal of the node whose data directory is `dataDir` lives. */
export function reorgJournalPath(dataDir: string): string {
  return join(dataDir, "ledger", REORG_JOURNAL);
}

/**
 * Writes, atomically, the journal of a reorganisation that replaces the blocks above
 * `ancestor` (whose hash is `ancestorHash`) with `blocks`.
 */
export function writeReorgJournal(
  path: string,
  ancestor: number,
  ancestorHash: Buffer,
  blocks: ImportedBlock[],
): void {
  const w = new Writer(1024)
    .bytes16(Buffer.from("chainvault/reorg/v1"))
    .u64(BigInt(ancestor))
    .fixed(ancestorHash, 32)
    .u32(blocks.length);
  for (const b of blocks) w.bytes32(b.bytes);
  const body = w.finish();
  writeFileAtomic(path, Buffer.concat([sha256(body), body]));
}

/** Reads a journal, or returns undefined if there is none or it fails its checksum. */
export function readReorgJournal(
  path: string,
): { ancestor: number; ancestorHash: Buffer; blocks: ImportedBlock[] } | undefined {
  if (!existsSync(path)) return undefined;
  const raw = readFileSync(path);
  const body = raw.subarray(32);
  if (raw.length < 32 || !sha256(body).equals(raw.subarray(0, 32))) return undefined;
  const r = new Reader(body, "reorg journal");
  r.bytes16();
  const ancestor = Number(r.u64());
  const ancestorHash = Buffer.from(r.fixed(32));
  const n = r.u32();
  const blocks: ImportedBlock[] = [];
  for (let i = 0; i < n; i++) {
    const bytes = Buffer.from(r.bytes32(BLOCK_BYTES_MAX));
    blocks.push(prepareBlock(decodeBlock(bytes), bytes));
  }
  return { ancestor, ancestorHash, blocks };
}
