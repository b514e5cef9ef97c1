/**
 * Creating and opening a repository, and its key files: the config (sealed JSON: id,
 * chunker parameters, signing public key) and `keys/<id>`, the master key wrapped by one
 * passphrase each. Repository (repository.ts) calls these; they take the parts of it they
 * need, so this module does not import it back.
 */

import { randomBytes } from "node:crypto";
import type { Backend } from "./backend.js";
import { type ChunkerParams, DEFAULT_CHUNKER_PARAMS } from "./chunker.js";
import { open, publicKeyBytes, seal, signingKeyOf } from "./crypto.js";
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

const CONFIG_AAD = Buffer.from("chainvault/config/v1");

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

/** What creating or opening a repository yields: its config, master key and the key file used. */
export interface OpenedRepo {
  config: RepoConfig;
  master: MasterKey;
  /** The key file the password opened. */
  keyId: string;
}

/** The parts of an open repository that key management uses (Repository has them). */
export interface KeyHolder {
  readonly backend: Backend;
  readonly master: MasterKey;
  readonly keyId: string;
}

/** Creates a repository; refuses if one exists at the location (Repository.init). */
export async function initRepo(backend: Backend, password: string, o: InitOptions = {}): Promise<OpenedRepo> {
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
  return { config, master, keyId: kf.id };
}

/**
 * The repository's key files in the order {@link openRepo} tries them, each decoded
 * (undefined: damaged). The CLI's early start (cli/early-start.ts) picks the same one.
 */
export async function keyFilesInOrder(
  backend: Backend,
): Promise<{ name: string; kf: KeyFile | undefined }[]> {
  const objects = (await backend.list("keys/")).sort((a, b) => a.name.localeCompare(b.name));
  const out: { name: string; kf: KeyFile | undefined }[] = [];
  for (const o of objects) out.push({ name: o.name, kf: decodeKeyFile(await backend.get(o.name)) });
  return out;
}

/** Opens a repository with a password; nothing is written (Repository.open). */
export async function openRepo(backend: Backend, password: string): Promise<OpenedRepo> {
  if (!(await backend.stat("config")))
    throw new VaultError(
      { code: VaultErrorCode.RepoMissing, location: backend.location },
      `No repository at ${backend.location}: run \`chainvault repo init --repo ${backend.location}\` first, or check the path`,
    );
  const keyObjects = await keyFilesInOrder(backend);
  const damaged = keyObjects.filter((k) => !k.kf).map((k) => k.name);
  for (const { kf } of keyObjects) {
    if (!kf) continue;
    const master = await unwrapMasterKey(kf, password);
    if (!master) continue;
    const sealed = await backend.get("config");
    const plain = open(master.dataKey, sealed, CONFIG_AAD);
    if (!plain)
      throw new VaultError(
        { code: VaultErrorCode.ObjectCorrupt, name: "config", location: backend.location },
        `Repository ${backend.location} is damaged: its config does not authenticate; restore the repository from a copy (\`chainvault copy\`)`,
      );
    return { config: JSON.parse(plain.toString("utf8")) as RepoConfig, master, keyId: kf.id };
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

/** Wraps the master key under another password and stores the key file (Repository.addKey). */
export async function addKey(
  repo: KeyHolder,
  password: string,
  label: string,
  kdf?: InitOptions["kdf"],
): Promise<KeyFile> {
  const kf = await wrapMasterKey(repo.master, password, label, kdf);
  await repo.backend.put(`keys/${kf.id}`, encodeKeyFile(kf));
  return kf;
}

/** Every key file, damaged ones by id (Repository.listKeys). */
export async function listKeys(repo: KeyHolder): Promise<(KeyFile | { id: string; damaged: true })[]> {
  const out: (KeyFile | { id: string; damaged: true })[] = [];
  for (const o of await repo.backend.list("keys/")) {
    const kf = decodeKeyFile(await repo.backend.get(o.name));
    out.push(kf ?? { id: o.name.slice(5), damaged: true });
  }
  return out;
}

/** Removes a key file; refuses to remove the last one or the one in use. */
export async function removeKey(repo: KeyHolder, id: string): Promise<void> {
  const lock = await RepoLock.acquire(repo.backend, { exclusive: true, op: "key remove" });
  try {
    await removeKeyLocked(repo, id);
  } finally {
    await lock.release();
  }
}

async function removeKeyLocked(repo: KeyHolder, id: string): Promise<void> {
  const keys = await repo.backend.list("keys/");
  if (!keys.some((k) => k.name === `keys/${repo.keyId}`))
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
      `No key ${id} in repository ${repo.backend.location}`,
    );
  if (id === repo.keyId)
    throw new VaultError(
      { code: VaultErrorCode.BadInput, id },
      `Cannot remove key ${id}: it is the key this command opened the repository with; open with another password to remove it`,
    );
  await repo.backend.delete(`keys/${id}`);
}
