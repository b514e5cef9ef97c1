/**
 * Pack files: many sealed chunks of one data class in one object, so a repository holds
 * thousands of objects rather than millions. Layout (all integers little-endian):
 *
 *   blob 0 || blob 1 || ... || sealed header || u32 sealed header length || "CVP1"
 *
 * A blob is a chunk, zstd-compressed unless that did not pay, sealed with AES-256-GCM
 * under the class's data key with the chunk id as associated data. The header lists, in
 * order, for each blob: id (32), flags (1: bit 0 = compressed), raw length (u32), stored
 * length (u32); offsets follow from the order. The index (index-file.ts) repeats the same
 * facts, so a pack can be checked against it and the index rebuilt from packs.
 */
import { randomBytes } from "node:crypto";
import type { ObjectWriter } from "./backend.js";
import { open, seal } from "./crypto.js";

export const PACK_MAGIC = Buffer.from("CVP1");
const TRAILER_BYTES = 8;
const HEADER_ENTRY_BYTES = 32 + 1 + 4 + 4;
const HEADER_AAD = Buffer.from("chainvault/pack-header/v1");
export const FLAG_COMPRESSED = 1;

/** One blob of a pack, as its header and the index describe it. */
export interface PackEntry {
  id: Buffer;
  offset: number;
  /** Stored (sealed) length. */
  length: number;
  rawLength: number;
  flags: number;
}

/** Accumulates sealed blobs of one class until the pack is full; then {@link finish}. */
export class PackBuilder {
  readonly name = randomBytes(32).toString("hex");
  private readonly parts: Buffer[] = [];
  private readonly writes: Promise<void>[] = [];
  readonly entries: PackEntry[] = [];
  sizeBytes = 0;

  /**
   * With a `writer`, blobs go to the backend as they are added (a pack never sits whole in
   * memory) and {@link commit} finishes the object; without, {@link finish} returns the parts.
   */
  private readonly writer: Promise<ObjectWriter> | undefined;

  constructor(
    readonly dataClass: string,
    openWriter?: (objectName: string) => Promise<ObjectWriter>,
  ) {
    this.writer = openWriter?.(packObjectName(dataClass, this.name));
    // Observed by the first write or by commit(); must not be an unhandled rejection meanwhile.
    this.writer?.catch(() => undefined);
  }

  get streaming(): boolean {
    return this.writer !== undefined;
  }

  /**
   * Adds a sealed blob. Streaming, it is written at once and the promise says when its bytes
   * may be reused; otherwise a copy is kept until {@link finish}.
   */
  add(id: Buffer, sealedBlob: Buffer, rawLength: number, flags: number): Promise<void> {
    const e: PackEntry = { id, offset: this.sizeBytes, length: sealedBlob.length, rawLength, flags };
    let written = Promise.resolve();
    if (this.writer) {
      written = this.writer.then((x) => x.write(sealedBlob, e.offset));
      // Observed in commit(); a rejection here must not be unhandled meanwhile.
      written.catch(() => undefined);
      this.writes.push(written);
    } else this.parts.push(Buffer.from(sealedBlob));
    this.entries.push(e);
    this.sizeBytes += sealedBlob.length;
    return written.catch(() => undefined);
  }

  /** The pack's bytes, as parts to write in order: blobs, sealed header and trailer. */
  finish(key: Uint8Array): { parts: Buffer[]; sizeBytes: number } {
    const header = Buffer.allocUnsafe(this.entries.length * HEADER_ENTRY_BYTES);
    let o = 0;
    for (const e of this.entries) {
      e.id.copy(header, o);
      header[o + 32] = e.flags;
      header.writeUInt32LE(e.rawLength, o + 33);
      header.writeUInt32LE(e.length, o + 37);
      o += HEADER_ENTRY_BYTES;
    }
    const sealedHeader = seal(key, header, HEADER_AAD);
    const trailer = Buffer.allocUnsafe(TRAILER_BYTES);
    trailer.writeUInt32LE(sealedHeader.length, 0);
    PACK_MAGIC.copy(trailer, 4);
    const parts = [...this.parts, sealedHeader, trailer];
    this.parts.length = 0;
    return { parts, sizeBytes: this.sizeBytes + sealedHeader.length + trailer.length };
  }

  /**
   * Streaming mode: gives the object up (its writes settled, its temporary file removed), for
   * a backup that fails before the pack is stored. Without a writer there is nothing to undo.
   */
  async abort(): Promise<void> {
    if (!this.writer) return;
    await Promise.allSettled(this.writes);
    const writer = await this.writer.catch(() => undefined);
    await writer?.abort();
  }

  /** Streaming mode: writes the header and trailer after the blobs and stores the object. */
  async commit(key: Uint8Array): Promise<number> {
    const writer = await this.writer!;
    const { parts, sizeBytes } = this.finish(key);
    try {
      await Promise.all(this.writes);
      let pos = this.sizeBytes;
      for (const p of parts) {
        await writer.write(p, pos);
        pos += p.length;
      }
      await writer.commit();
    } catch (err) {
      await writer.abort();
      throw err;
    }
    return sizeBytes;
  }
}

/** The object name of a pack. */
export function packObjectName(dataClass: string, name: string): string {
  return `data/${dataClass}/${name.slice(0, 2)}/${name}`;
}

/** Parses an object name made by {@link packObjectName}. */
export function parsePackObjectName(objectName: string): { dataClass: string; name: string } | undefined {
  const m = /^data\/([a-z][a-z0-9-]*)\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(objectName);
  if (!m || m[3]!.slice(0, 2) !== m[2]) return undefined;
  return { dataClass: m[1]!, name: m[3]! };
}

/**
 * Reads a whole pack's header; returns the entries, or a reason why the pack is damaged.
 */
export function parsePack(key: Uint8Array, pack: Buffer): PackEntry[] | string {
  if (pack.length < TRAILER_BYTES) return "shorter than its trailer";
  const hlen = parseTrailer(pack.subarray(pack.length - TRAILER_BYTES), pack.length);
  if (typeof hlen === "string") return hlen;
  const hstart = pack.length - TRAILER_BYTES - hlen;
  return parseHeader(key, pack.subarray(hstart, pack.length - TRAILER_BYTES), hstart);
}

/** The sealed header's length from a pack's last 8 bytes, or why they are wrong. */
export function parseTrailer(trailer: Buffer, packBytes: number): number | string {
  if (trailer.length !== TRAILER_BYTES) return "shorter than its trailer";
  if (!trailer.subarray(4).equals(PACK_MAGIC)) return "trailer magic is wrong";
  const hlen = trailer.readUInt32LE(0);
  if (packBytes - TRAILER_BYTES - hlen < 0) return "header length runs past the start";
  return hlen;
}

/** Decodes a sealed header that starts at `hstart`; the blobs must fill the bytes before it. */
export function parseHeader(key: Uint8Array, sealedHeader: Buffer, hstart: number): PackEntry[] | string {
  const header = open(key, sealedHeader, HEADER_AAD);
  if (!header) return "header does not authenticate";
  if (header.length % HEADER_ENTRY_BYTES !== 0) return "header has a partial entry";
  const entries: PackEntry[] = [];
  let offset = 0;
  for (let o = 0; o < header.length; o += HEADER_ENTRY_BYTES) {
    const length = header.readUInt32LE(o + 37);
    entries.push({
      id: Buffer.from(header.subarray(o, o + 32)),
      flags: header[o + 32]!,
      rawLength: header.readUInt32LE(o + 33),
      length,
      offset,
    });
    offset += length;
  }
  if (offset !== hstart) return `blobs end at ${offset} but the header starts at ${hstart}`;
  return entries;
}

/** Reads and decodes a stored pack's header with two range reads. */
export async function readPackHeader(
  backend: { getRange(name: string, offset: number, length: number): Promise<Buffer> },
  key: Uint8Array,
  objectName: string,
  packBytes: number,
): Promise<PackEntry[] | string> {
  if (packBytes < TRAILER_BYTES) return "shorter than its trailer";
  const hlen = parseTrailer(
    await backend.getRange(objectName, packBytes - TRAILER_BYTES, TRAILER_BYTES),
    packBytes,
  );
  if (typeof hlen === "string") return hlen;
  const hstart = packBytes - TRAILER_BYTES - hlen;
  return parseHeader(key, await backend.getRange(objectName, hstart, hlen), hstart);
}
