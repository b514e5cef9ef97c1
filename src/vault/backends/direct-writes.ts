/**
 * Pack files written around the page cache (O_DIRECT). A backup writes hundreds of
 * megabytes that nobody reads back soon; through the page cache each byte is first copied
 * into a freshly allocated cache page (on the bench's VM the host must supply every such
 * page: `perf` put that copy at 16% of an incremental backup's CPU, ~2.8 ns a byte) and the
 * node's own hot pages are evicted to make room. Written directly, the disk reads the bytes
 * from a few reused staging slots instead. Opt-in (CHAINVAULT_DIRECT_IO=1, see local.ts):
 * the packs are then not in the page cache for whoever reads them next.
 *
 * O_DIRECT needs the memory, the file offset and the length aligned. The slots live in one
 * WebAssembly memory (its base is page-aligned; Node has no other way to ask for aligned
 * memory); blobs are copied into them in order, each full slot is written at an aligned
 * offset, and the last, partial one is padded with zeros to a whole block and the file cut
 * back to its length before the fsync. Where this cannot be had the writer falls back to
 * ordinary writes, with the same crash safety: no WebAssembly memory (V8 reserves ~10 GiB
 * of address space for one, more than `ulimit -v` may allow), a file system that refuses
 * O_DIRECT at open (EINVAL), or one that refuses a direct write (EINVAL: the staged bytes
 * are then written again through an ordinary descriptor of the same temporary file).
 */
import { constants } from "node:fs";
import { type FileHandle, open, unlink } from "node:fs/promises";
import { copyInto } from "../../util/bytes.js";
import { BufferPool } from "../buffer-pool.js";

// Node has WebAssembly; the type libraries this project builds with (ES2022, no DOM) do not declare it.
declare const WebAssembly: { Memory: new (d: { initial: number }) => { buffer: ArrayBuffer } };

// 1 MiB slots (a direct write of 1 MiB ran as fast as 4 MiB ones on this VM's disk), sixteen
// of them. A blob's seal buffer is free again once its bytes are staged, and a slot once the
// disk has its bytes, so the slots are what let the disk lag behind sealing: with four, an
// incremental backup's writes waited 238-269 ms in all for a free slot (and took ~0.08 s
// longer), with eight up to 44 ms, with twelve or sixteen never. Slots are reused last-freed
// first, so those a backup does not need are never touched and cost no memory.
export const SLOT_BYTES = 1024 * 1024;
const SLOTS = 16;
// Lengths and offsets of direct writes are multiples of this (the largest logical block
// size of common devices; the memory is aligned to 64 KiB, WebAssembly's page).
export const DIRECT_ALIGN = 4096;

let pool: BufferPool | undefined | null;

/**
 * The process's staging slots, page-aligned parts of one WebAssembly memory, or null where
 * no WebAssembly memory can be had. Reused last-freed first, so their pages stay warm.
 */
function slotPool(): BufferPool | null {
  if (pool === undefined) {
    try {
      const memory = new WebAssembly.Memory({ initial: (SLOTS * SLOT_BYTES) / 65536 }).buffer;
      pool = new BufferPool(SLOT_BYTES, SLOTS, false, (i) => Buffer.from(memory, i * SLOT_BYTES, SLOT_BYTES));
    } catch {
      pool = null;
    }
  }
  return pool;
}

/** The file operations a direct writer needs; its user adds the rename and the cleanup. */
export interface FileWriter {
  /** Writes bytes at `position`; positions must follow each other (an append). */
  write(data: Uint8Array, position: number): Promise<void>;
  /** Writes what is staged, sets the file's length and fsyncs it; then closes it. */
  finish(): Promise<void>;
  /** Closes the file without finishing it (the caller removes it). */
  close(): Promise<void>;
}

function isEinval(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === "EINVAL";
}

/** How a direct writer opens and writes its file; tests stand in a file system that refuses O_DIRECT. */
export interface DirectIo {
  open(path: string, flags: number, mode: number): Promise<FileHandle>;
  write(fh: FileHandle, data: Uint8Array, position: number): Promise<void>;
}

const realIo: DirectIo = { open: (path, flags, mode) => open(path, flags, mode), write: writeAll };

/**
 * Creates `path` (which must not exist) for writing: directly if this system allows it,
 * else through the page cache. `onRefused` is called when direct writes turn out to be
 * refused on this file system, so the caller can stop asking for them.
 */
export async function createFileWriter(
  path: string,
  mode: number,
  direct: boolean,
  onRefused: () => void,
  io: DirectIo = realIo,
): Promise<FileWriter> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;
  const slots = direct ? slotPool() : null;
  if (slots) {
    try {
      return new DirectFileWriter(
        path,
        await io.open(path, flags | constants.O_DIRECT, mode),
        slots,
        onRefused,
        io,
      );
    } catch (err) {
      if (!isEinval(err)) throw err;
      onRefused();
      // Linux creates the file before it refuses O_DIRECT: the empty file is ours (the name
      // is unique and O_EXCL made it) and goes, or the ordinary open below would find it.
      await unlink(path).catch(() => undefined);
    }
  }
  return bufferedFileWriter(await open(path, flags, mode));
}

function bufferedFileWriter(fh: FileHandle): FileWriter {
  return {
    write: (data, position) => writeAll(fh, data, position),
    finish: async () => {
      await fh.sync();
      await fh.close();
    },
    close: () => fh.close(),
  };
}

async function writeAll(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off, position + off);
    off += bytesWritten;
  }
}

class DirectFileWriter implements FileWriter {
  private slot: Buffer | undefined;
  /** Bytes staged in the current slot. */
  private fill = 0;
  /** File offset of the current slot's first byte. */
  private slotStart = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown;
  /** Opened once a direct write is refused: the rest goes through the page cache. */
  private buffered: Promise<FileHandle> | undefined;

  constructor(
    private readonly path: string,
    private readonly fh: FileHandle,
    private readonly slots: BufferPool,
    private readonly onRefused: () => void,
    private readonly io: DirectIo,
  ) {}

  /** Bytes are staged in call order: a write waiting for a slot holds back those after it. */
  private queue: Promise<void> = Promise.resolve();

  write(data: Uint8Array, position: number): Promise<void> {
    const p = this.queue.then(() => this.append(data, position));
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async append(data: Uint8Array, position: number): Promise<void> {
    if (this.failure) throw this.failure;
    if (position !== this.slotStart + this.fill)
      throw new RangeError(
        `Writes to ${this.path} must follow each other: ${position} after ${this.slotStart + this.fill}`,
      );
    let off = 0;
    while (off < data.length) {
      this.slot ??= await this.slots.acquire();
      const n = Math.min(data.length - off, SLOT_BYTES - this.fill);
      copyInto(this.slot, this.fill, data.subarray(off, off + n));
      this.fill += n;
      off += n;
      if (this.fill === SLOT_BYTES) this.send(SLOT_BYTES);
    }
  }

  /** Writes the current slot's first `length` bytes (a multiple of the alignment) in the background. */
  private send(length: number): void {
    const slot = this.slot!;
    const start = this.slotStart;
    this.slot = undefined;
    this.slotStart += this.fill;
    this.fill = 0;
    const p = this.writeSlot(slot, length, start)
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => {
        this.slots.release(slot);
        this.inFlight.delete(p);
      });
    this.inFlight.add(p);
  }

  private async writeSlot(slot: Buffer, length: number, position: number): Promise<void> {
    const bytes = slot.subarray(0, length);
    if (!this.buffered) {
      try {
        return await this.io.write(this.fh, bytes, position);
      } catch (err) {
        if (!isEinval(err)) throw err;
        // This file system takes O_DIRECT at open but not these writes: the same bytes go
        // through an ordinary descriptor, and so does everything after them. One descriptor,
        // however many writes were refused at once.
        this.onRefused();
        if (!this.buffered) {
          this.buffered = open(this.path, constants.O_WRONLY);
          this.buffered.catch(() => undefined);
        }
      }
    }
    await writeAll(await this.buffered, bytes, position);
  }

  async finish(): Promise<void> {
    await this.queue;
    const length = this.slotStart + this.fill;
    // The last slot, padded with zeros to a whole block; the file is cut back below.
    const padded = this.slot !== undefined;
    if (this.slot !== undefined) {
      const end = Math.ceil(this.fill / DIRECT_ALIGN) * DIRECT_ALIGN;
      this.slot.fill(0, this.fill, end);
      this.send(end);
    }
    await this.settle();
    if (this.failure) throw this.failure;
    if (padded) await ((await this.buffered) ?? this.fh).truncate(length);
    await this.fh.sync();
    if (this.buffered) await (await this.buffered).sync();
    await this.close();
  }

  private async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  async close(): Promise<void> {
    await this.queue;
    await this.settle();
    if (this.slot !== undefined) {
      this.slots.release(this.slot);
      this.slot = undefined;
    }
    await this.fh.close().catch(() => undefined);
    const buffered = await this.buffered?.catch(() => undefined);
    await buffered?.close().catch(() => undefined);
  }
}
