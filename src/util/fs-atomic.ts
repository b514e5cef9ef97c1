import { closeSync, fsyncSync, openSync, readSync, renameSync, writeSync } from "node:fs";
import { dirname } from "node:path";

/**
 * Flushes a file, or a directory's entry table, to disk: for a directory, so that a rename
 * or create inside it survives a crash.
 */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes a file so that after a crash at any instant the path holds either the old or the
 * whole new content: temp file, fsync, rename, fsync of the directory.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w", mode);
  try {
    const buf = typeof data === "string" ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncDir(dirname(path));
}

/** Copies the first `length` bytes of `src` to a new file `dst` and fsyncs it. */
export function copyFilePrefix(src: string, dst: string, length: number): void {
  const from = openSync(src, "r");
  const to = openSync(dst, "w");
  try {
    // 1 MiB: a bounded buffer whatever the size of the file.
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let pos = 0; pos < length; ) {
      const n = readSync(from, buf, 0, Math.min(buf.length, length - pos), pos);
      if (n <= 0) break;
      writeSync(to, buf, 0, n, pos);
      pos += n;
    }
    fsyncSync(to);
  } finally {
    closeSync(from);
    closeSync(to);
  }
}
