/**
 * The index: which pack holds each chunk, where, and how long it is. Index objects
 * (`index/<name>`) are sealed binary lists written after the packs they describe, so an
 * index entry never names a pack that is not fully stored. Plaintext layout, little-endian:
 *
 *   u32 pack count, then per pack: name (32) | u8 class length | class (ASCII) | u32 pack size
 *   | u32 entry count | entries: id (32) | u32 offset | u32 stored length | u32 raw length | u8 flags
 *
 * In memory a chunk costs one Map entry keyed by its 32 id bytes; 2 GiB of chain data at
 * 1 MiB chunks is ~2,000 entries.
 */
import { randomBytes } from "node:crypto";
import { open, seal } from "./crypto.js";
import type { PackEntry } from "./pack.js";

const INDEX_AAD = Buffer.from("chainvault/index/v1");
const ENTRY_BYTES = 32 + 4 + 4 + 4 + 1;

/** A pack as the index knows it. */
export interface PackInfo {
  name: string;
  dataClass: string;
  sizeBytes: number;
  entries: PackEntry[];
}

/** Where a chunk is stored. */
export interface ChunkLocation {
  pack: PackInfo;
  entry: PackEntry;
}

export function encodeIndex(key: Uint8Array, packs: readonly PackInfo[]): Buffer {
  let size = 4;
  for (const p of packs) size += 32 + 1 + p.dataClass.length + 8 + p.entries.length * ENTRY_BYTES;
  const b = Buffer.allocUnsafe(size);
  let o = b.writeUInt32LE(packs.length, 0);
  for (const p of packs) {
    o += Buffer.from(p.name, "hex").copy(b, o);
    o = b.writeUInt8(p.dataClass.length, o);
    o += b.write(p.dataClass, o, "ascii");
    o = b.writeUInt32LE(p.sizeBytes, o);
    o = b.writeUInt32LE(p.entries.length, o);
    for (const e of p.entries) {
      o += e.id.copy(b, o);
      o = b.writeUInt32LE(e.offset, o);
      o = b.writeUInt32LE(e.length, o);
      o = b.writeUInt32LE(e.rawLength, o);
      o = b.writeUInt8(e.flags, o);
    }
  }
  return seal(key, b, INDEX_AAD);
}

/** Decodes an index object; returns a reason string if it is damaged. */
export function decodeIndex(key: Uint8Array, sealed: Buffer): PackInfo[] | string {
  const b = open(key, sealed, INDEX_AAD);
  if (!b) return "does not authenticate";
  try {
    const packs: PackInfo[] = [];
    let o = 0;
    const n = b.readUInt32LE(o);
    o += 4;
    for (let i = 0; i < n; i++) {
      const name = b.subarray(o, o + 32).toString("hex");
      o += 32;
      const cl = b.readUInt8(o);
      o += 1;
      const dataClass = b.toString("ascii", o, o + cl);
      o += cl;
      const sizeBytes = b.readUInt32LE(o);
      const count = b.readUInt32LE(o + 4);
      o += 8;
      const entries: PackEntry[] = [];
      for (let j = 0; j < count; j++) {
        entries.push({
          id: Buffer.from(b.subarray(o, o + 32)),
          offset: b.readUInt32LE(o + 32),
          length: b.readUInt32LE(o + 36),
          rawLength: b.readUInt32LE(o + 40),
          flags: b.readUInt8(o + 44),
        });
        o += ENTRY_BYTES;
      }
      packs.push({ name, dataClass, sizeBytes, entries });
    }
    if (o !== b.length) return `has ${b.length - o} trailing bytes`;
    return packs;
  } catch {
    return "is truncated inside an entry";
  }
}

export function newIndexName(): string {
  return `index/${randomBytes(32).toString("hex")}`;
}

/** Every chunk of the repository, by id. */
export class ChunkIndex {
  private readonly byId = new Map<string, ChunkLocation>();
  readonly packs = new Map<string, PackInfo>();
  /** Index objects loaded, with the pack names each lists. */
  readonly files = new Map<string, string[]>();

  add(pack: PackInfo): void {
    this.packs.set(pack.name, pack);
    for (const entry of pack.entries) this.byId.set(entry.id.toString("latin1"), { pack, entry });
  }

  get(id: Buffer): ChunkLocation | undefined {
    return this.byId.get(id.toString("latin1"));
  }

  has(id: Buffer): boolean {
    return this.byId.has(id.toString("latin1"));
  }

  get chunkCount(): number {
    return this.byId.size;
  }
}
