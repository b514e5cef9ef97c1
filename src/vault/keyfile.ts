/**
 * The repository's master key and the key files that wrap it. The master key is a set of
 * random 32-byte secrets; each key file holds it sealed under a key derived from one
 * passphrase with scrypt, so passphrases can be added and removed without re-encrypting
 * data. Key files are plaintext JSON with a sha256 checksum, so damage to one is told
 * apart from a wrong passphrase.
 */
import { createHash, randomBytes } from "node:crypto";
import { hostname, userInfo } from "node:os";
import * as z from "../util/zod.js";
import { deriveKey, newSalt, open, SCRYPT_DEFAULT, type ScryptParams, seal } from "./crypto.js";

/** The secrets of a repository. */
export interface MasterKey {
  /** Seals packs' chunks, index files, snapshots and the config of every class but keys. */
  dataKey: Buffer;
  /** Keys chunk ids (HMAC-SHA256) of every class but keys. */
  idKey: Buffer;
  /** The keys component's own data key: its chunks never share a key or an id space with others. */
  keysDataKey: Buffer;
  keysIdKey: Buffer;
  /** Seeds the chunker's gear table, so chunk boundaries do not reveal content. */
  chunkerKey: Buffer;
  /** Seed of the ed25519 key that signs snapshot manifests. */
  signSeed: Buffer;
}

const MASTER_FIELDS = ["dataKey", "idKey", "keysDataKey", "keysIdKey", "chunkerKey", "signSeed"] as const;

export function newMasterKey(): MasterKey {
  const k = {} as MasterKey;
  for (const f of MASTER_FIELDS) k[f] = randomBytes(32);
  return k;
}

const KeyFileSchema = z.object({
  version: z.literal(1),
  id: z.string().check(z.regex(/^[0-9a-f]{16}$/)),
  createdAt: z.string(),
  host: z.string(),
  user: z.string(),
  label: z.string(),
  kdf: z.object({
    name: z.literal("scrypt"),
    N: z.int().check(z.minimum(2)),
    r: z.int().check(z.minimum(1)),
    p: z.int().check(z.minimum(1)),
    salt: z.string(),
  }),
  wrapped: z.string(),
});

/** The public part of a key file: what `repo key list` shows. */
export type KeyFile = z.infer<typeof KeyFileSchema>;

const WRAP_AAD = Buffer.from("chainvault/master-key/v1");

function checksumOf(body: string): string {
  return createHash("sha256").update(body).digest("hex");
}

/** Serialises a key file: the JSON body followed by a line with its sha256. */
export function encodeKeyFile(k: KeyFile): Buffer {
  const body = JSON.stringify(k);
  return Buffer.from(`${body}\n${checksumOf(body)}\n`);
}

/** Parses a key file; returns undefined if it is damaged (checksum or shape). */
export function decodeKeyFile(bytes: Buffer): KeyFile | undefined {
  const text = bytes.toString("utf8");
  const nl = text.indexOf("\n");
  if (nl < 0) return undefined;
  const body = text.slice(0, nl);
  if (text.slice(nl + 1) !== `${checksumOf(body)}\n`) return undefined;
  try {
    const parsed = KeyFileSchema.safeParse(JSON.parse(body));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Wraps the master key under a passphrase into a new key file. */
export async function wrapMasterKey(
  master: MasterKey,
  password: string,
  label: string,
  kdf: Omit<ScryptParams, "salt"> = SCRYPT_DEFAULT,
): Promise<KeyFile> {
  const params: ScryptParams = { ...kdf, salt: newSalt() };
  const kek = await deriveKey(password, params);
  const plain = Buffer.from(
    JSON.stringify(Object.fromEntries(MASTER_FIELDS.map((f) => [f, master[f].toString("base64")]))),
  );
  return {
    version: 1,
    id: randomBytes(8).toString("hex"),
    createdAt: new Date().toISOString(),
    host: hostname(),
    user: safeUser(),
    label,
    kdf: { name: "scrypt", ...params },
    wrapped: seal(kek, plain, WRAP_AAD).toString("base64"),
  };
}

/** Unwraps the master key; undefined if the passphrase does not open this key file. */
export async function unwrapMasterKey(k: KeyFile, password: string): Promise<MasterKey | undefined> {
  const kek = await deriveKey(password, k.kdf);
  const plain = open(kek, Buffer.from(k.wrapped, "base64"), WRAP_AAD);
  if (!plain) return undefined;
  const obj = JSON.parse(plain.toString("utf8")) as Record<string, string>;
  const m = {} as MasterKey;
  for (const f of MASTER_FIELDS) {
    const v = Buffer.from(obj[f] ?? "", "base64");
    if (v.length !== 32) return undefined;
    m[f] = v;
  }
  return m;
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return "unknown";
  }
}
