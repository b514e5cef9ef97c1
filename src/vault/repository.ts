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
 */

import type { KeyObject } from "node:crypto";
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { mapLimit } from "../util/map-limit.js";
import type { Backend } from "./backend.js";
import { ChunkIndex, decodeIndex } from "./chunk-index.js";
import { type ChunkerParams, DEFAULT_CHUNKER_PARAMS, gearTable } from "./chunker.js";
import { chunkId, open, openInto, publicKeyBytes, seal, signingKeyOf } from "./crypto.js";
import { CryptoWorkers, cryptoThreads } from "./crypto-workers.js";
import { VaultError, VaultErrorCode } from "./errors.js";
import {
  decodeKeyFile,
  encodeKeyFile,
  type KeyFile,
  type MasterKey,
  newMasterKey,
  unwrapMasterKey,
  wrapMasterKey,
} from "./keyfile.js";
import { RepoLock } from "./lock.js";
import { FLAG_COMPRESSED, type PackEntry } from "./pack.js";
import { decodeSnapshot, encodeSnapshot, type Manifest } from "./snapshot.js";

// zstd-napi's native binding (CommonJS): synchronous decompression into a bounded buffer.
const zstd = createRequire(import.meta.url)("zstd-napi/binding.js") as typeof import("zstd-napi/binding.js");

const CONFIG_AAD = Buffer.from("chainvault/config/v1");
const VERIFICATION_AAD = Buffer.from("chainvault/verification/v1");

/** The repository's settings, fixed at init. */
export interface RepoConfig {
  version: 1;
  id: string;
  createdAt: string;
  chunker: ChunkerParams;
  /** Packs are closed once they reach this size. */
  packTargetBytes: number;
  /** zstd level of chunk compression. */
  compressionLevel: number;
  signPublicKey: string;
}

export interface InitOptions {
  chunker?: ChunkerParams;
  packTargetBytes?: number;
  compressionLevel?: number;
  /** scrypt cost; tests lower it. */
  kdf?: { N: number; r: number; p: number };
}

// 16 MiB: restic's default pack size; big enough for sequential I/O, small enough that a
// pack in flight costs little memory.
export const PACK_TARGET_BYTES_DEFAULT = 16 * 1024 * 1024;
// Level 2: on chain data (signed transfers, random payloads) 0.3% larger than level 3 and 2.4x
// faster (measured on a 64 MiB ledger segment: 1.85 against 4.39 ms/MiB on one core).
export const COMPRESSION_LEVEL_DEFAULT = 2;

/** The data class whose chunks use the repository's separate keys-data key. */
export const KEYS_CLASS = "keys";

/** A snapshot as listed: its id and manifest, or why it cannot be trusted. */
export type SnapshotEntry = { id: string; manifest: Manifest } | { id: string; problem: string };

/** One verification run's result for one snapshot and level. */
export interface VerificationRecord {
  snapshotId: string;
  level: "structure" | "data" | "chain";
  ok: boolean;
  time: string;
  detail: string;
}

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
    if (await backend.stat("config"))
      throw new VaultError(
        { code: VaultErrorCode.RepoExists, location: backend.location },
        `Cannot initialise a repository at ${backend.location}: one already exists there`,
      );
    // Key files without a config are left by an init that died before its last write.
    for (const k of await backend.list("keys/")) await backend.delete(k.name);
    const master = newMasterKey();
    const kf = await wrapMasterKey(master, password, "initial", o.kdf);
    const config: RepoConfig = {
      version: 1,
      id: randomBytes(16).toString("hex"),
      createdAt: new Date().toISOString(),
      chunker: o.chunker ?? DEFAULT_CHUNKER_PARAMS,
      packTargetBytes: o.packTargetBytes ?? PACK_TARGET_BYTES_DEFAULT,
      compressionLevel: o.compressionLevel ?? COMPRESSION_LEVEL_DEFAULT,
      signPublicKey: publicKeyBytes(signingKeyOf(master.signSeed)).toString("hex"),
    };
    await backend.put(`keys/${kf.id}`, encodeKeyFile(kf));
    // The config is written last: its presence is what makes the repository exist.
    await backend.put("config", seal(master.dataKey, Buffer.from(JSON.stringify(config)), CONFIG_AAD));
    return new Repository(backend, config, master, kf.id);
  }

  /** Opens a repository with a password; nothing is written. */
  static async open(backend: Backend, password: string): Promise<Repository> {
    if (!(await backend.stat("config")))
      throw new VaultError(
        { code: VaultErrorCode.RepoMissing, location: backend.location },
        `No repository at ${backend.location}: run \`chainvault repo init --repo ${backend.location}\` first, or check the path`,
      );
    const keyObjects = await backend.list("keys/");
    const damaged: string[] = [];
    for (const o of keyObjects.sort((a, b) => a.name.localeCompare(b.name))) {
      const kf = decodeKeyFile(await backend.get(o.name));
      if (!kf) {
        damaged.push(o.name);
        continue;
      }
      const master = await unwrapMasterKey(kf, password);
      if (!master) continue;
      const sealed = await backend.get("config");
      const plain = open(master.dataKey, sealed, CONFIG_AAD);
      if (!plain)
        throw new VaultError(
          { code: VaultErrorCode.ObjectCorrupt, name: "config", location: backend.location },
          `Repository ${backend.location} is damaged: its config does not authenticate; restore the repository from a copy (\`chainvault copy\`)`,
        );
      return new Repository(backend, JSON.parse(plain.toString("utf8")) as RepoConfig, master, kf.id);
    }
    if (keyObjects.length === 0)
      throw new VaultError(
        { code: VaultErrorCode.ObjectCorrupt, location: backend.location },
        `Cannot open repository ${backend.location}: it has no key files; restore the keys/ folder from a copy of the repository`,
      );
    if (damaged.length > 0 && damaged.length === keyObjects.length)
      throw new VaultError(
        { code: VaultErrorCode.ObjectCorrupt, damaged, location: backend.location },
        `Cannot open repository ${backend.location}: every key file is damaged (${damaged.join(", ")}); restore the keys/ folder from a copy of the repository`,
      );
    throw new VaultError(
      {
        code: VaultErrorCode.WrongPassword,
        tried: keyObjects.length - damaged.length,
        damaged,
        location: backend.location,
      },
      `Cannot open repository ${backend.location}: the password does not open any of its ${keyObjects.length - damaged.length} key files${damaged.length ? ` (${damaged.length} more are damaged: ${damaged.join(", ")})` : ""}; check CHAINVAULT_PASSWORD or --password-file`,
    );
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
    const objs = await this.backend.list("snapshots/");
    const out: SnapshotEntry[] = [];
    await mapLimit(objs, 8, async (o) => {
      out.push(await this.readSnapshot(o.name.slice("snapshots/".length)));
    });
    return out.sort((a, b) =>
      "manifest" in a && "manifest" in b
        ? a.manifest.time.localeCompare(b.manifest.time)
        : a.id.localeCompare(b.id),
    );
  }

  async readSnapshot(id: string): Promise<SnapshotEntry> {
    const bytes = await this.backend.get(`snapshots/${id}`);
    const r = decodeSnapshot(this.master.dataKey, Buffer.from(this.config.signPublicKey, "hex"), id, bytes);
    return "manifest" in r ? { id, manifest: r.manifest } : { id, problem: r.problem };
  }

  async writeSnapshot(m: Manifest): Promise<string> {
    const { id, bytes } = encodeSnapshot(this.master.dataKey, this.signKey, m);
    await this.backend.put(`snapshots/${id}`, bytes);
    return id;
  }

  /**
   * Finds a snapshot by `latest`, a full id or a unique prefix of at least 6 characters;
   * throws SnapshotMissing otherwise.
   */
  async resolveSnapshot(ref: string, filter?: (m: Manifest) => boolean): Promise<SnapshotEntry> {
    const all = await this.listSnapshots();
    if (ref === "latest") {
      const good = all.filter(
        (s): s is { id: string; manifest: Manifest } => "manifest" in s && (!filter || filter(s.manifest)),
      );
      const last = good.at(-1);
      if (last) return last;
    } else if (/^[0-9a-f]{6,64}$/.test(ref)) {
      const hits = all.filter((s) => s.id.startsWith(ref));
      if (hits.length === 1) return hits[0]!;
      if (hits.length > 1)
        throw new VaultError(
          { code: VaultErrorCode.SnapshotMissing, ref },
          `Snapshot prefix ${ref} is ambiguous in ${this.backend.location}: it matches ${hits.length} snapshots; give more characters`,
        );
    }
    throw new VaultError(
      { code: VaultErrorCode.SnapshotMissing, ref, location: this.backend.location },
      `No snapshot ${ref} in repository ${this.backend.location}; run \`chainvault snapshots --repo ${this.backend.location}\` to list them`,
    );
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
    const kf = await wrapMasterKey(this.master, password, label, kdf);
    await this.backend.put(`keys/${kf.id}`, encodeKeyFile(kf));
    return kf;
  }

  async listKeys(): Promise<(KeyFile | { id: string; damaged: true })[]> {
    const out: (KeyFile | { id: string; damaged: true })[] = [];
    for (const o of await this.backend.list("keys/")) {
      const kf = decodeKeyFile(await this.backend.get(o.name));
      out.push(kf ?? { id: o.name.slice(5), damaged: true });
    }
    return out;
  }

  /** Removes a key file; refuses to remove the last one or the one in use. */
  async removeKey(id: string): Promise<void> {
    const lock = await RepoLock.acquire(this.backend, { exclusive: true, op: "key remove" });
    try {
      await this.removeKeyLocked(id);
    } finally {
      await lock.release();
    }
  }

  private async removeKeyLocked(id: string): Promise<void> {
    const keys = await this.backend.list("keys/");
    if (!keys.some((k) => k.name === `keys/${this.keyId}`))
      throw new VaultError(
        { code: VaultErrorCode.BadInput, id },
        `Cannot remove key ${id}: the key this command opened the repository with is gone (removed by another process); open the repository again`,
      );
    if (keys.length <= 1)
      throw new VaultError(
        { code: VaultErrorCode.BadInput, id },
        `Cannot remove key ${id}: it is the repository's last key; add another first`,
      );
    if (!keys.some((k) => k.name === `keys/${id}`))
      throw new VaultError(
        { code: VaultErrorCode.BadInput, id },
        `No key ${id} in repository ${this.backend.location}`,
      );
    if (id === this.keyId)
      throw new VaultError(
        { code: VaultErrorCode.BadInput, id },
        `Cannot remove key ${id}: it is the key this command opened the repository with; open with another password to remove it`,
      );
    await this.backend.delete(`keys/${id}`);
  }

  async writeVerification(r: VerificationRecord): Promise<void> {
    const name = `verifications/${r.snapshotId}/${Date.now()}-${r.level}-${randomBytes(4).toString("hex")}`;
    await this.backend.put(name, seal(this.master.dataKey, Buffer.from(JSON.stringify(r)), VERIFICATION_AAD));
  }

  /** The latest verification of each level for each snapshot. */
  async readVerifications(): Promise<
    Map<string, Partial<Record<VerificationRecord["level"], VerificationRecord>>>
  > {
    const out = new Map<string, Partial<Record<VerificationRecord["level"], VerificationRecord>>>();
    const objs = await this.backend.list("verifications/");
    await mapLimit(objs, 8, async (o) => {
      const plain = open(
        this.master.dataKey,
        await this.backend.get(o.name).catch(() => Buffer.alloc(0)),
        VERIFICATION_AAD,
      );
      if (!plain) return;
      const r = JSON.parse(plain.toString("utf8")) as VerificationRecord;
      const cur = out.get(r.snapshotId) ?? {};
      const prev = cur[r.level];
      if (!prev || prev.time < r.time) cur[r.level] = r;
      out.set(r.snapshotId, cur);
    });
    return out;
  }
}
