/**
 * The index: which pack holds each chunk, where, and how long it is. Index objects
 * (`index/<name>`) are sealed binary lists written after the packs they describe, so an
 * index entry never names a pack that is not fully stored. Plaintext layout, little-endian:
 *
 *   u32 pack count, then per pack: name (32) | u8 class length | class (ASCII) | u32 pack size
 *   | u32 entry count | entries: id (32) | u32 offset | u32 stored length | u32 raw length | u8 flags
 *
 * Loaded, the index keeps what it knows of each pack in memory (a few dozen bytes per 16 MiB
 * pack) and its chunks in a Map while they are few; past a bound (1,000,000 chunks, about
 * 1 TiB at 1 MiB chunks, by default) it moves them into a private temporary SQLite database
 * whose page cache is capped at 8 MiB, so a large repository's index does not have to sit
 * whole in memory. SQLite deletes that file itself when it is closed or the process ends.
 */
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import type BetterSqlite3 from "better-sqlite3";
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

/** A pack as a loaded index keeps it: its chunks are asked for with `entriesOf`. */
export interface PackMeta {
  name: string;
  dataClass: string;
  sizeBytes: number;
  entryCount: number;
}

/** Where a chunk is stored. */
export interface ChunkLocation {
  pack: PackMeta;
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

/** Chunks held in memory before the index moves them to disk; CHAINVAULT_INDEX_MEMORY_ENTRIES overrides. */
export const INDEX_MEMORY_ENTRIES_DEFAULT = 1_000_000;

export function indexMemoryEntries(): number {
  const v = process.env.CHAINVAULT_INDEX_MEMORY_ENTRIES;
  if (v === undefined || v === "") return INDEX_MEMORY_ENTRIES_DEFAULT;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RangeError(
      `CHAINVAULT_INDEX_MEMORY_ENTRIES must be a whole number of chunks (0 or more), got "${v}"`,
    );
  return n;
}

/** The chunks of a large index, in a temporary SQLite database. */
class DiskChunks {
  private readonly db: BetterSqlite3.Database;
  private readonly insert: BetterSqlite3.Statement;
  private readonly byId: BetterSqlite3.Statement;
  private readonly byPack: BetterSqlite3.Statement;
  private readonly packIds = new Map<string, number>();
  private readonly packList: PackMeta[] = [];

  constructor() {
    // Loaded only here: a small repository never pays for the native module.
    const Database = createRequire(import.meta.url)("better-sqlite3") as typeof BetterSqlite3;
    // "": a private temporary database, deleted by SQLite when closed or when the process ends.
    this.db = new Database("");
    this.db.pragma("journal_mode = OFF");
    this.db.pragma("synchronous = OFF");
    this.db.pragma("cache_size = -8192");
    this.db.pragma("temp_store = FILE");
    this.db.exec(
      "CREATE TABLE chunk (pack INTEGER NOT NULL, offset INTEGER NOT NULL, id BLOB NOT NULL, length INTEGER NOT NULL, raw INTEGER NOT NULL, flags INTEGER NOT NULL, PRIMARY KEY (pack, offset)) WITHOUT ROWID; CREATE INDEX chunk_id ON chunk (id);",
    );
    this.insert = this.db.prepare("INSERT OR REPLACE INTO chunk VALUES (?, ?, ?, ?, ?, ?)");
    this.byId = this.db.prepare("SELECT pack, offset, length, raw, flags FROM chunk WHERE id = ? LIMIT 1");
    this.byPack = this.db.prepare(
      "SELECT id, offset, length, raw, flags FROM chunk WHERE pack = ? ORDER BY offset",
    );
  }

  add(meta: PackMeta, entries: readonly PackEntry[]): void {
    let p = this.packIds.get(meta.name);
    if (p === undefined) {
      p = this.packList.length;
      this.packIds.set(meta.name, p);
      this.packList.push(meta);
    } else this.packList[p] = meta;
    const pack = p;
    this.db.transaction(() => {
      for (const e of entries) this.insert.run(pack, e.offset, e.id, e.length, e.rawLength, e.flags);
    })();
  }

  get(id: Buffer): ChunkLocation | undefined {
    const r = this.byId.get(id) as Row | undefined;
    if (!r) return undefined;
    return {
      pack: this.packList[r.pack]!,
      entry: { id: Buffer.from(id), offset: r.offset, length: r.length, rawLength: r.raw, flags: r.flags },
    };
  }

  has(id: Buffer): boolean {
    return this.byId.get(id) !== undefined;
  }

  entriesOf(name: string): PackEntry[] {
    const p = this.packIds.get(name);
    if (p === undefined) return [];
    return (this.byPack.all(p) as (Omit<Row, "pack"> & { id: Buffer })[]).map((r) => ({
      id: r.id,
      offset: r.offset,
      length: r.length,
      rawLength: r.raw,
      flags: r.flags,
    }));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

interface Row {
  pack: number;
  offset: number;
  length: number;
  raw: number;
  flags: number;
}

/** Every chunk of the repository, by id. */
export class ChunkIndex {
  /** What the index knows of each pack, by name. */
  readonly packs = new Map<string, PackMeta>();
  /** Index objects loaded, with the pack names each lists. */
  readonly files = new Map<string, string[]>();
  private memory: { byId: Map<string, ChunkLocation>; entries: Map<string, PackEntry[]> } | undefined = {
    byId: new Map(),
    entries: new Map(),
  };
  private disk: DiskChunks | undefined;
  private entryCount = 0;

  /** `memoryEntries`: chunks kept in memory before the index moves them to disk. */
  constructor(private readonly memoryEntries = indexMemoryEntries()) {}

  add(pack: PackInfo): void {
    const meta: PackMeta = {
      name: pack.name,
      dataClass: pack.dataClass,
      sizeBytes: pack.sizeBytes,
      entryCount: pack.entries.length,
    };
    this.packs.set(pack.name, meta);
    this.entryCount += pack.entries.length;
    if (this.memory && this.entryCount > this.memoryEntries) this.spill();
    if (this.disk) {
      this.disk.add(meta, pack.entries);
      return;
    }
    const m = this.memory!;
    m.entries.set(pack.name, pack.entries);
    for (const entry of pack.entries) m.byId.set(entry.id.toString("latin1"), { pack: meta, entry });
  }

  /** Moves the chunks to a temporary database. */
  private spill(): void {
    const m = this.memory!;
    this.disk = new DiskChunks();
    for (const [name, entries] of m.entries) this.disk.add(this.packs.get(name)!, entries);
    this.memory = undefined;
  }

  /** Whether the chunks are on disk rather than in memory. */
  get spilled(): boolean {
    return this.disk !== undefined;
  }

  get(id: Buffer): ChunkLocation | undefined {
    return this.disk ? this.disk.get(id) : this.memory!.byId.get(id.toString("latin1"));
  }

  has(id: Buffer): boolean {
    return this.disk ? this.disk.has(id) : this.memory!.byId.has(id.toString("latin1"));
  }

  /** A pack's chunks, in the order they are stored. */
  entriesOf(packName: string): PackEntry[] {
    return this.disk ? this.disk.entriesOf(packName) : (this.memory!.entries.get(packName) ?? []);
  }

  /** A pack with its chunks, for writing an index object. */
  packInfo(meta: PackMeta): PackInfo {
    return {
      name: meta.name,
      dataClass: meta.dataClass,
      sizeBytes: meta.sizeBytes,
      entries: this.entriesOf(meta.name),
    };
  }

  /** Frees the temporary database, if there is one. */
  close(): void {
    this.disk?.close();
  }
}
