/**
 * A repository in a local directory. Objects are files named by their object name; a write
 * goes to a temporary file beside its target, is fsynced, renamed into place and the
 * directory fsynced, so a crash leaves either the whole object or none of it.
 */
import { randomBytes } from "node:crypto";
import { type FileHandle, mkdir, open, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { errorMessage, isNoSpace } from "../../util/errors.js";
import { assertObjectName, type Backend, type ObjectInfo, type ObjectWriter } from "../backend.js";
import { VaultError, VaultErrorCode } from "../errors.js";
import { createFileWriter, type FileWriter } from "./direct-writes.js";

// Read handles kept open on packs: one per pack a restore or verify is reading, with room.
const READERS_MAX = 16;
// Temporary files carry this infix; list() skips them and they are never valid object names.
const TMP_INFIX = ".tmp-";

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export class LocalBackend implements Backend {
  readonly location: string;
  private readonly madeDirs = new Set<string>();
  private readonly readers = new Map<string, { fh: Promise<FileHandle>; users: number }>();
  /**
   * Whether packs are written around the page cache (CHAINVAULT_DIRECT_IO=1; off once this
   * file system refuses it). Off by default: the CPU it saves a backup (on this VM, the host
   * supplying fresh cache pages) the next reader of the packs pays instead. bench/backup's
   * restore, right after the backups, read every pack from the disk into fresh pages and took
   * 7.8-9.7 s against 4.0-4.8 s from the cached packs of a page-cache backup (restic's were
   * cached too), while the backups gained ~0.1 s (incremental) and ~1 s (full). An operator
   * whose node must keep its page cache through a backup turns it on.
   */
  private direct = process.env.CHAINVAULT_DIRECT_IO === "1";

  constructor(readonly root: string) {
    this.location = root;
  }

  private path(name: string): string {
    assertObjectName(name);
    return join(this.root, ...name.split("/"));
  }

  private fail(op: string, name: string, err: unknown): VaultError {
    const errno = errnoOf(err);
    const full = isNoSpace(err);
    const hint = full
      ? ": the disk is full; free space and run the command again"
      : errno === "EACCES" || errno === "EPERM"
        ? ": permission denied; check the repository directory's owner and mode"
        : errno === "EROFS"
          ? ": the file system is read-only"
          : "";
    return new VaultError(
      {
        code: full ? VaultErrorCode.NoSpace : VaultErrorCode.BackendFailed,
        op,
        name,
        errno,
        location: this.location,
      },
      `Cannot ${op} ${name} in repository ${this.location}: ${errorMessage(err)}${hint}`,
    );
  }

  private async ensureDir(dir: string): Promise<void> {
    if (this.madeDirs.has(dir)) return;
    await mkdir(dir, { recursive: true });
    this.madeDirs.add(dir);
  }

  async put(name: string, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    // One write path for whole objects and streamed packs: temp file, fsync, rename, fsync
    // of the directory; a failure at any step removes the temp file. Whole objects (index,
    // snapshots, keys, locks) are small and go through the page cache.
    const w = await this.writer(name, false);
    let pos = 0;
    for (const part of data instanceof Uint8Array ? [data] : data) {
      await w.write(part, pos);
      pos += part.length;
    }
    await w.commit();
  }

  /** Streamed objects (packs): around the page cache when direct writes are on (see `direct`). */
  openWriter(name: string): Promise<ObjectWriter> {
    return this.writer(name, this.direct);
  }

  private async writer(name: string, direct: boolean): Promise<ObjectWriter> {
    const path = this.path(name);
    const dir = dirname(path);
    const tmp = `${path}${TMP_INFIX}${process.pid}-${randomBytes(4).toString("hex")}`;
    let fw: FileWriter;
    try {
      await this.ensureDir(dir);
      fw = await createFileWriter(tmp, 0o600, direct, () => {
        this.direct = false;
      });
    } catch (err) {
      throw this.fail("write", name, err);
    }
    const abort = async (): Promise<void> => {
      await fw.close().catch(() => undefined);
      await rm(tmp, { force: true }).catch(() => undefined);
    };
    return {
      write: async (data, position) => {
        try {
          await fw.write(data, position);
        } catch (err) {
          await abort();
          throw this.fail("write", name, err);
        }
      },
      commit: async () => {
        try {
          await fw.finish();
          await rename(tmp, path);
          const dh = await open(dir, "r");
          try {
            await dh.sync();
          } finally {
            await dh.close();
          }
        } catch (err) {
          await abort();
          throw this.fail("write", name, err);
        }
      },
      abort,
    };
  }

  async get(name: string): Promise<Buffer> {
    const path = this.path(name);
    try {
      const fh = await open(path, "r");
      try {
        return await fh.readFile();
      } finally {
        await fh.close();
      }
    } catch (err) {
      throw this.readError(name, err);
    }
  }

  getRange(name: string, offset: number, length: number): Promise<Buffer> {
    return this.getRangeInto(name, offset, length, Buffer.allocUnsafe(length));
  }

  async getRangeInto(name: string, offset: number, length: number, into: Buffer): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0)
      throw new RangeError(`Invalid range ${offset}+${length} of ${name}`);
    if (into.length < length)
      throw new RangeError(`A ${into.length}-byte buffer cannot hold ${length} bytes of ${name}`);
    const path = this.path(name);
    let fh: FileHandle;
    let release: () => Promise<void>;
    try {
      ({ fh, release } = await this.reader(name, path));
    } catch (err) {
      throw this.readError(name, err);
    }
    try {
      const buf = into.subarray(0, length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      if (got < length)
        throw new VaultError(
          { code: VaultErrorCode.ObjectCorrupt, name, offset, length, location: this.location },
          `Cannot read ${name} in repository ${this.location}: it ends before byte ${offset + length} (truncated); run \`chainvault verify\` to find the damage`,
        );
      return buf;
    } catch (err) {
      if (err instanceof VaultError) throw err;
      throw this.readError(name, err);
    } finally {
      await release();
    }
  }

  /**
   * A read handle on an object. Packs (`data/…`, never changed once written) keep theirs
   * open between range reads: a restore reads each pack blob by blob, and an open and a
   * close per blob cost more than the read. Idle handles beyond the cache size are closed.
   */
  private async reader(
    name: string,
    path: string,
  ): Promise<{ fh: FileHandle; release: () => Promise<void> }> {
    if (!name.startsWith("data/")) {
      const fh = await open(path, "r");
      return { fh, release: () => fh.close() };
    }
    let r = this.readers.get(name);
    if (!r) {
      const opening = open(path, "r");
      r = { fh: opening, users: 0 };
      this.readers.set(name, r);
      try {
        await opening;
      } catch (err) {
        this.readers.delete(name);
        throw err;
      }
    }
    // Most recently used last.
    this.readers.delete(name);
    this.readers.set(name, r);
    r.users++;
    const fh = await r.fh;
    const entry = r;
    return {
      fh,
      release: async () => {
        entry.users--;
        await this.trimReaders(READERS_MAX);
      },
    };
  }

  private async trimReaders(max: number): Promise<void> {
    for (const [name, r] of this.readers) {
      if (this.readers.size <= max) break;
      if (r.users > 0) continue;
      this.readers.delete(name);
      await (await r.fh).close().catch(() => undefined);
    }
  }

  private readError(name: string, err: unknown): VaultError {
    if (errnoOf(err) === "ENOENT")
      return new VaultError(
        { code: VaultErrorCode.ObjectMissing, name, location: this.location },
        `Object ${name} is missing from repository ${this.location}`,
      );
    return this.fail("read", name, err);
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    const path = this.path(name);
    try {
      const s = await stat(path);
      return s.isFile() ? { name, sizeBytes: s.size } : undefined;
    } catch (err) {
      if (errnoOf(err) === "ENOENT") return undefined;
      throw this.fail("stat", name, err);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const clean = prefix.replace(/\/+$/, "");
    if (clean !== "") assertObjectName(clean);
    const base = clean === "" ? this.root : join(this.root, ...clean.split("/"));
    const out: ObjectInfo[] = [];
    let entries: import("node:fs").Dirent[];
    try {
      entries = await readdir(base, { withFileTypes: true, recursive: true });
    } catch (err) {
      if (errnoOf(err) === "ENOENT") return out;
      throw this.fail("list", prefix, err);
    }
    for (const e of entries) {
      if (!e.isFile() || e.name.includes(TMP_INFIX)) continue;
      const full = join(e.parentPath, e.name);
      const name = relative(this.root, full).split(sep).join("/");
      try {
        const s = await stat(full);
        out.push({ name, sizeBytes: s.size });
      } catch (err) {
        // Deleted between readdir and stat (a concurrent prune): not listed.
        if (errnoOf(err) !== "ENOENT") throw this.fail("list", prefix, err);
      }
    }
    return out;
  }

  async delete(name: string): Promise<void> {
    const path = this.path(name);
    try {
      await unlink(path);
    } catch (err) {
      if (errnoOf(err) === "ENOENT") return;
      throw this.fail("delete", name, err);
    }
  }

  /** Removes temporary files left by writers that died; called by prune under an exclusive lock. */
  async removeStaleTemporaries(): Promise<number> {
    let n = 0;
    const entries = await readdir(this.root, { withFileTypes: true, recursive: true }).catch(() => []);
    for (const e of entries)
      if (e.isFile() && e.name.includes(TMP_INFIX)) {
        await rm(join(e.parentPath, e.name), { force: true });
        n++;
      }
    return n;
  }

  async releaseIdle(): Promise<void> {
    await this.trimReaders(0);
  }

  async close(): Promise<void> {
    await this.trimReaders(0);
  }
}
