/**
 * Hashing and ed25519 over Node's own crypto. Public keys travel as 32 raw bytes; the
 * KeyObjects that OpenSSL needs are built once per key and cached.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  hash,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";

export const HASH_BYTES = 32;
export const PUBKEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

/** sha256 of the concatenation of the parts. */
export function sha256(...parts: Uint8Array[]): Buffer {
  // The one-shot API skips the Hash object; it is a third cheaper for the small inputs here.
  return hash("sha256", parts.length === 1 ? parts[0]! : Buffer.concat(parts), "buffer") as unknown as Buffer;
}

/**
 * sha256 of `data` written into `out` at `at`. OpenSSL's digest comes back as a latin1
 * string and is copied in, so no Buffer (with a backing store to allocate and later free)
 * is made per hash: for the small inputs of the check workers' loops, that allocation was
 * more than half the cost of hashing.
 */
export function sha256Into(data: Uint8Array, out: Buffer, at = 0): void {
  out.write(hash("sha256", data, "binary") as unknown as string, at, HASH_BYTES, "latin1");
}

// The DER prefix of an ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it.
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

// 4096 keys: far more than the validators and accounts of a devnet; bounds memory if a
// peer sends transactions from many distinct keys.
const KEY_CACHE_MAX = 4096;
const keyCache = new Map<string, KeyObject>();

/** Builds (or returns the cached) KeyObject for a raw ed25519 public key. */
export function publicKeyObject(raw: Uint8Array): KeyObject {
  // latin1 of a Buffer view: one short string, no copy of the key bytes.
  const id = (Buffer.isBuffer(raw) ? raw : Buffer.from(raw)).toString("latin1");
  let k = keyCache.get(id);
  if (k) return k;
  k = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: "der", type: "spki" });
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value as string);
  keyCache.set(id, k);
  return k;
}

/** An ed25519 key pair: the private KeyObject and the raw public key. */
export interface KeyPair {
  privateKey: KeyObject;
  publicKey: Buffer;
}

export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { privateKey, publicKey: rawPublicKey(publicKey) };
}

export function rawPublicKey(key: KeyObject): Buffer {
  const der = (key.type === "private" ? createPublicKey(key) : key).export({ format: "der", type: "spki" });
  return Buffer.from(der.subarray(der.length - PUBKEY_BYTES));
}

/** Serialises a private key as PKCS#8 PEM. */
export function exportPrivateKeyPem(key: KeyObject): string {
  return key.export({ format: "pem", type: "pkcs8" }).toString();
}

export function importPrivateKeyPem(pem: string): KeyPair {
  const privateKey = createPrivateKey({ key: pem, format: "pem" });
  if (privateKey.asymmetricKeyType !== "ed25519") {
    throw new TypeError(`Expected an ed25519 private key, got ${privateKey.asymmetricKeyType ?? "unknown"}`);
  }
  return { privateKey, publicKey: rawPublicKey(privateKey) };
}

export function signMessage(key: KeyObject, message: Uint8Array): Buffer {
  return sign(null, message, key);
}

/** Verifies on the calling thread. */
export function verifySync(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_BYTES || publicKey.length !== PUBKEY_BYTES) return false;
  try {
    return verify(null, message, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}

/**
 * Verifies on libuv's thread pool, so that many verifications run on all cores while the
 * event loop stays free.
 */
export function verifyAsync(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if (signature.length !== SIGNATURE_BYTES || publicKey.length !== PUBKEY_BYTES)
    return Promise.resolve(false);
  let key: KeyObject;
  try {
    key = publicKeyObject(publicKey);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    verify(null, message, key, signature, (err, ok) => resolve(!err && ok));
  });
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

export function fromHex(s: string, size: number, what: string): Buffer {
  if (!/^[0-9a-fA-F]*$/.test(s) || s.length !== size * 2) {
    throw new TypeError(`Invalid ${what}: expected ${size * 2} hex characters`);
  }
  return Buffer.from(s, "hex");
}
