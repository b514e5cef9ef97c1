/**
 * An open repository: its config, master key, index and snapshots over a {@link Backend}.
 * Object layout:
 *
 *   config                       sealed JSON: id, chunker parameters, signing public key
 *   keys/<id>                    key files: the master key wrapped by one passphrase each
 *   data/<class>/<xx>/<name>     packs (pack.ts)
 *   index/<name>                 index objects (chunk-index.ts)
 *   snapshots/<sha256>           signed, sealed manifests (snapshot.ts)
 *   verifications/<snap>/<name>  sealed verification records, one per verify run and level
 *   locks/<name>                 locks (lock.ts)
 *
 * Creating, opening and key files live in repo-keys.ts, snapshots in repo-snapshots.ts and
 * verification records in repo-verifications.ts; this class holds the open state and delegates.
 */

import type { KeyObject } from "node:crypto";
import { createRequire } from "node:module";
import { mapLimit } from "../util/map-limit.js";
import type { Backend } from "./backend.js";
import { ChunkIndex, decodeIndex } from "./chunk-index.js";
import { gearTable } from "./chunker.js";
import { chunkId, openInto, signingKeyOf } from "./crypto.js";
import { CryptoWorkers, cryptoThreads } from "./crypto-workers.js";
import type { KeyFile, MasterKey } from "./keyfile.js";
import { FLAG_COMPRESSED, type PackEntry } from "./pack.js";
import {
  addKey,
  type InitOptions,
  initRepo,
  listKeys,
  openRepo,
  type RepoConfig,
  removeKey,
} from "./repo-keys.js";
import {
  listSnapshots,
  readSnapshot,
  resolveSnapshot,
  type SnapshotEntry,
  writeSnapshot,
} from "./repo-snapshots.js";
import { readVerifications, type VerificationRecord, writeVerification } from "./repo-verifications.js";
import type { Manifest } from "./snapshot.js";

export {
  COMPRESSION_LEVEL_DEFAULT,
  type InitOptions,
  PACK_TARGET_BYTES_DEFAULT,
  type RepoConfig,
} from "./repo-keys.js";
export type { SnapshotEntry } from "./repo-snapshots.js";
export type { VerificationRecord } from "./repo-verifications.js";

// zstd-napi's native binding (CommonJS): synchronous decompression into a bounded buffer.
const zstd = createRequire(import.meta.url)("zstd-napi/binding.js") as typeof import("zstd-napi/binding.js");

/** The data class whose chunks use the repository's separate keys-data key. */
export const KEYS_CLASS = "keys";

export class Repository {
  readonly gear: Uint32Array;
  readonly signKey: KeyObject;

  private constructor(
    readonly backend: Backend,
    readonly config: RepoConfig,
    readonly master: MasterKey,
    /** The key file the password opened. */
    readonly keyId: string,
  ) {
    this.gear = gearTable(master.chunkerKey);
    this.signKey = signingKeyOf(master.signSeed);
  }

  /** Creates a repository; refuses if one exists at the location. */
  static async init(backend: Backend, password: string, o: InitOptions = {}): Promise<Repository> {
    const r = await initRepo(backend, password, o);
    return new Repository(backend, r.config, r.master, r.keyId);
  }

  /** Opens a repository with a password; nothing is written. */
  static async open(backend: Backend, password: string): Promise<Repository> {
    const r = await openRepo(backend, password);
    return new Repository(backend, r.config, r.master, r.keyId);
  }
  /**
   * Worker threads holding this repository's keys, for bulk work; the caller closes them.
   * Workers booted by CryptoWorkers.prewarm are taken first. `mainThreadBusy`: the calling
   * thread has a core's worth of its own work (a backup reads and cuts chunks), so one worker fewer than there are cores;
   * otherwise (restore, verify: the main thread mostly waits on I/O) one per core. Each
   * worker costs ~12 MiB; on 2 cores a backup with one worker is ~10% slower and ~20 MiB
   * smaller (bench/backup).
   */
  startCryptoWorkers(mainThreadBusy = false): CryptoWorkers {
    return new CryptoWorkers(
      {
        "": { dataKey: this.master.dataKey, idKey: this.master.idKey },
        [KEYS_CLASS]: { dataKey: this.master.keysDataKey, idKey: this.master.keysIdKey },
      },
      cryptoThreads(mainThreadBusy),
    );
  }

  /** The data key and id key of a data class. */
  keysOf(dataClass: string): { dataKey: Buffer; idKey: Buffer } {
    return dataClass === KEYS_CLASS
      ? { dataKey: this.master.keysDataKey, idKey: this.master.keysIdKey }
      : { dataKey: this.master.dataKey, idKey: this.master.idKey };
  }

  /**
   * Loads every index object; damaged ones are returned by name, not thrown. `memoryEntries`: chunks kept in memory before the index moves
   * them to a temporary database (chunk-index.ts); the caller closes the index when done.
   */
  async loadIndex(
    memoryEntries?: number,
  ): Promise<{ index: ChunkIndex; damaged: { name: string; problem: string }[] }> {
    const index = new ChunkIndex(memoryEntries);
    const damaged: { name: string; problem: string }[] = [];
    const objs = await this.backend.list("index/");
    await mapLimit(objs, 8, async (o) => {
      const packs = decodeIndex(this.master.dataKey, await this.backend.get(o.name));
      if (typeof packs === "string") damaged.push({ name: o.name, problem: packs });
      else {
        index.files.set(
          o.name,
          packs.map((p) => p.name),
        );
        for (const p of packs) index.add(p);
      }
    });
    return { index, damaged };
  }

  /** Every snapshot, decoded and checked; damaged ones carry a `problem`. */
  async listSnapshots(): Promise<SnapshotEntry[]> {
    return listSnapshots(this);
  }

  async readSnapshot(id: string): Promise<SnapshotEntry> {
    return readSnapshot(this, id);
  }

  async writeSnapshot(m: Manifest): Promise<string> {
    return writeSnapshot(this, m);
  }

  /**
   * Finds a snapshot by `latest`, a full id or a unique prefix of at least 6 characters;
   * throws SnapshotMissing otherwise.
   */
  async resolveSnapshot(ref: string, filter?: (m: Manifest) => boolean): Promise<SnapshotEntry> {
    return resolveSnapshot(this, ref, filter);
  }

  /**
   * Turns a stored blob back into its chunk: authenticate it under its id, decompress, and
   * (unless `rehash` is false, as for a restore: see CryptoWorkers.open) check that the
   * plaintext hashes to its id, the pair of the check made when it was written.
   */
  async decodeBlob(
    dataClass: string,
    entry: PackEntry,
    sealed: Buffer,
    out?: Buffer,
    rehash = true,
  ): Promise<Buffer | string> {
    const { dataKey, idKey } = this.keysOf(dataClass);
    const into = out ?? Buffer.allocUnsafe(sealed.length);
    const n = openInto(dataKey, sealed, entry.id, into);
    if (n === undefined) return "does not authenticate";
    let data = into.subarray(0, n);
    if (entry.flags & FLAG_COMPRESSED) {
      // The recorded length bounds what a hostile frame can expand to.
      const plain = Buffer.allocUnsafe(entry.rawLength);
      try {
        data = plain.subarray(0, new zstd.DCtx().decompress(plain, data));
      } catch {
        return "does not decompress into its recorded length";
      }
    }
    if (data.length !== entry.rawLength) return `has ${data.length} bytes, not ${entry.rawLength}`;
    if (rehash && !chunkId(idKey, data).equals(entry.id)) return "does not hash to its id";
    return data;
  }

  async addKey(password: string, label: string, kdf?: InitOptions["kdf"]): Promise<KeyFile> {
    return addKey(this, password, label, kdf);
  }

  async listKeys(): Promise<(KeyFile | { id: string; damaged: true })[]> {
    return listKeys(this);
  }

  /** Removes a key file; refuses to remove the last one or the one in use. */
  async removeKey(id: string): Promise<void> {
    return removeKey(this, id);
  }

  async writeVerification(r: VerificationRecord): Promise<void> {
    return writeVerification(this, r);
  }

  /** The latest verification of each level for each snapshot. */
  async readVerifications(): Promise<
    Map<string, Partial<Record<VerificationRecord["level"], VerificationRecord>>>
  > {
    return readVerifications(this);
  }
}
