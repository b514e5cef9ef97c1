/**
 * What a backup reads: named components, each a list of paths under a root directory.
 * The repository knows nothing of what the files mean; a node adapter builds the source
 * (which directories hold the ledger, which files only grow) and reports the anchor.
 */
import { lstat, readdir, readlink, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { VaultError, VaultErrorCode } from "./errors.js";

export interface SourceComponent {
  /** Name a restore selects it by: `ledger`, `state`, `config`, `keys`, `logs`. */
  name: string;
  /** Pack class of its chunks: packs never mix classes, so pruning one never repacks another. */
  dataClass: string;
  /** Directory the paths are read from. */
  rootDir: string;
  /** Files or directories under rootDir, `/`-separated; each is also its path in the snapshot. */
  include: string[];
  /**
   * Files that only ever grow, where an unchanged last chunk vouches for the whole prefix
   * (a hash-chained ledger): a backup reads only the tail that follows the parent's chunks.
   */
  appendOnly?: (path: string) => boolean;
  /** The entries, when they do not come from a directory (a copy between repositories). */
  entries?: SourceEntry[];
}

export interface BackupSource {
  sourceId: string;
  /** Where it came from, for the operator (a directory or a URL). */
  location: string;
  components: SourceComponent[];
  anchor?: Record<string, string | number>;
}

/** A file system entry found under a component. */
export interface SourceEntry {
  path: string;
  absPath: string;
  type: "file" | "dir" | "symlink";
  mode: number;
  mtimeMs: number;
  sizeBytes: number;
  target?: string;
  /** Opens the content, when it is not the file at absPath. */
  open?: () => Promise<ReadHandle>;
}

/** The part of a FileHandle a backup reads with: sequential positional reads. */
export interface ReadHandle {
  read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

/** Lists a component's entries, sorted by path, without following symlinks. */
export async function walkComponent(c: SourceComponent): Promise<SourceEntry[]> {
  if (c.entries) return c.entries;
  const out: SourceEntry[] = [];
  const visit = async (rel: string, root: boolean): Promise<void> => {
    const abs = join(c.rootDir, ...rel.split("/"));
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      // An included path itself is followed if it is a symlink (a ledger directory on
      // another volume); below it, symlinks are stored as links.
      st = root ? await stat(abs) : await lstat(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw new VaultError(
        { code: VaultErrorCode.BadInput, path: abs },
        `Cannot read ${abs} for component ${c.name}: ${(err as Error).message}`,
      );
    }
    const base = { path: rel, absPath: abs, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs };
    if (st.isSymbolicLink()) {
      out.push({ ...base, type: "symlink", sizeBytes: 0, target: await readlink(abs) });
    } else if (st.isFile()) {
      out.push({ ...base, type: "file", sizeBytes: st.size });
    } else if (st.isDirectory()) {
      out.push({ ...base, type: "dir", sizeBytes: 0 });
      for (const name of (await readdir(abs)).sort()) await visit(posix.join(rel, name), false);
    }
    // Sockets, FIFOs and devices are not data: skipped.
  };
  for (const inc of c.include) {
    if (inc.startsWith("/") || inc.split("/").includes(".."))
      throw new TypeError(
        `Component ${c.name} includes ${inc}: paths must be relative and stay under the root`,
      );
    await visit(inc, true);
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
