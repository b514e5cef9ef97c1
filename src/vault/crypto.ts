/**
 * The repository's cryptography, all from node:crypto: AES-256-GCM for every stored byte,
 * HMAC-SHA256 chunk ids, scrypt for passphrase keys and ed25519 manifest signatures.
 *
 * A sealed object is `nonce (12) || ciphertext || tag (16)`. The associated data binds it
 * to what it is (a chunk's id, an object kind) so that a valid blob moved elsewhere fails.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  randomBytes,
  scrypt,
  sign,
  verify,
} from "node:crypto";

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
/** Bytes a sealed blob adds to its plaintext. */
export const SEAL_OVERHEAD_BYTES = NONCE_BYTES + TAG_BYTES;

/** Encrypts and authenticates `plain` under `key` (32 bytes), bound to `aad`. */
export function seal(key: Uint8Array, plain: Uint8Array, aad: Uint8Array): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(aad);
  const out = Buffer.allocUnsafe(NONCE_BYTES + plain.length + TAG_BYTES);
  nonce.copy(out, 0);
  let n = NONCE_BYTES + c.update(plain).copy(out, NONCE_BYTES);
  n += c.final().copy(out, n);
  c.getAuthTag().copy(out, n);
  return out;
}

/** Decrypts a blob made by {@link seal}; returns undefined if it does not authenticate. */
export function open(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer | undefined {
  if (sealed.length < SEAL_OVERHEAD_BYTES) return undefined;
  const nonce = sealed.subarray(0, NONCE_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const d = createDecipheriv("aes-256-gcm", key, nonce);
  d.setAAD(aad);
  d.setAuthTag(tag);
  const body = d.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES));
  try {
    const fin = d.final();
    return fin.length === 0 ? body : Buffer.concat([body, fin]);
  } catch {
    return undefined;
  }
}

/** The keyed id of a chunk's plaintext. */
export function chunkId(idKey: Uint8Array, data: Uint8Array): Buffer {
  return createHmac("sha256", idKey).update(data).digest();
}

/** Parameters of the scrypt derivation of a passphrase key, stored in each key file. */
export interface ScryptParams {
  N: number;
  r: number;
  p: number;
  salt: string;
}

// N = 2^15, r = 8: ~100 ms and 32 MiB per attempt on this class of machine, the
// interactive setting of the scrypt paper; the parameters travel with each key file.
export const SCRYPT_DEFAULT = { N: 1 << 15, r: 8, p: 1 } as const;

/** Derivations started ahead of need ({@link deriveKeyAhead}), by salt and cost. */
const ahead = new Map<string, { password: string; key: Promise<Buffer> }>();

function aheadKey(params: ScryptParams): string {
  return `${params.salt}:${params.N}:${params.r}:${params.p}`;
}

function scryptKey(password: string, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      password.normalize("NFC"),
      Buffer.from(params.salt, "base64"),
      32,
      { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r + (1 << 20) },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

/**
 * Derives a 32-byte key from a passphrase. A derivation of the same passphrase and
 * parameters started by {@link deriveKeyAhead} is taken over (once) instead of run again.
 */
export function deriveKey(password: string, params: ScryptParams): Promise<Buffer> {
  const k = aheadKey(params);
  const started = ahead.get(k);
  if (started && started.password === password) {
    ahead.delete(k);
    return started.key;
  }
  return scryptKey(password, params);
}

/**
 * Starts a derivation now, on the thread pool, for the next {@link deriveKey} of the same
 * passphrase and parameters: the CLI starts the one its repository will need before the rest
 * of itself has loaded (cli/early-start.ts). Its failure is that deriveKey's to report.
 * Returns the derivation (for tests); a second call for the same passphrase and
 * parameters returns the first one's.
 */
export function deriveKeyAhead(password: string, params: ScryptParams): Promise<Buffer> {
  const k = aheadKey(params);
  const started = ahead.get(k);
  if (started && started.password === password) return started.key;
  const key = scryptKey(password, params);
  key.catch(() => undefined);
  ahead.set(k, { password, key });
  return key;
}

/** How many derivations started ahead have not been taken over yet (for tests). */
export function derivationsAhead(): number {
  return ahead.size;
}

/** A fresh salt for {@link deriveKey}. */
export function newSalt(): string {
  return randomBytes(16).toString("base64");
}

// DER prefix of a PKCS#8 ed25519 private key, followed by the 32-byte seed.
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
// DER prefix of an SPKI ed25519 public key, followed by the 32-byte key.
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** The ed25519 private key of a 32-byte seed. */
export function signingKeyOf(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
}

/** The raw 32-byte public key of a signing key. */
export function publicKeyBytes(key: KeyObject): Buffer {
  const der = createPublicKey(key).export({ format: "der", type: "spki" });
  return Buffer.from(der.subarray(der.length - 32));
}

export function signBytes(key: KeyObject, data: Uint8Array): Buffer {
  return sign(null, data, key);
}

export function verifyBytes(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean {
  const key = createPublicKey({
    key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]),
    format: "der",
    type: "spki",
  });
  try {
    return verify(null, data, key, signature);
  } catch {
    return false;
  }
}

// 16 KiB slices: each slice's output comes from the malloc heap and is reused, where a
// whole-chunk update gets fresh pages every time, and faulting in fresh pages costs more
// than the cipher itself on this class of machine (measured: 16 KiB ~2.4 GB/s, 64 KiB
// ~1.8 GB/s, 1 MiB ~0.7 GB/s for AES-256-GCM decryption).
const SLICE_BYTES = 16 * 1024;

/** {@link open} into `out`; returns the plaintext length, or undefined if it does not authenticate. */
export function openInto(
  key: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array,
  out: Buffer,
): number | undefined {
  if (sealed.length < SEAL_OVERHEAD_BYTES) return undefined;
  const d = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, NONCE_BYTES));
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  const end = sealed.length - TAG_BYTES;
  let n = 0;
  for (let p = NONCE_BYTES; p < end; p += SLICE_BYTES)
    n += d.update(sealed.subarray(p, Math.min(end, p + SLICE_BYTES))).copy(out, n);
  try {
    n += d.final().copy(out, n);
  } catch {
    return undefined;
  }
  return n;
}
