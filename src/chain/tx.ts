/**
 * Transaction encoding (version 1, big-endian):
 *
 *   u8 version | from[32] | to[32] | u64 amount | u64 nonce | u16 dataLen | data | signature[64]
 *
 * The signature covers sha256("chainvault/tx/v1" | genesisHash | bytes before the signature),
 * so a transaction is valid on one chain only. The transaction id is sha256 of all its bytes.
 */
import type { KeyObject } from "node:crypto";
import { HASH_BYTES, PUBKEY_BYTES, SIGNATURE_BYTES, sha256, sha256Into, signMessage } from "./crypto.js";
import { Reader, Writer } from "./encoding.js";
import { type Transaction, TX_DATA_BYTES_MAX } from "./types.js";

const TX_VERSION = 1;
const TX_DOMAIN = Buffer.from("chainvault/tx/v1");

function writeUnsigned(w: Writer, tx: Omit<Transaction, "signature">): void {
  w.u8(TX_VERSION).fixed(tx.from, PUBKEY_BYTES).fixed(tx.to, PUBKEY_BYTES).u64(tx.amount).u64(tx.nonce);
  w.bytes16(tx.data);
}

/**
 * A transaction decoded from bytes. It keeps those bytes, so that hashing and signature
 * checks do not re-encode it. A copy (`{ ...tx }`) is a plain object without them, so a
 * modified copy is always encoded afresh; the fields are views of the same bytes, so even
 * an in-place edit of a field's bytes shows in them.
 */
class DecodedTx implements Transaction {
  readonly #raw: Buffer;

  constructor(
    public from: Buffer,
    public to: Buffer,
    public amount: bigint,
    public nonce: bigint,
    public data: Buffer,
    public signature: Buffer,
    raw: Buffer,
  ) {
    this.#raw = raw;
  }

  /** The bytes a transaction was decoded from, if it was decoded and not copied. */
  static rawOf(tx: object): Buffer | undefined {
    return #raw in tx ? (tx as DecodedTx).#raw : undefined;
  }
}

export function encodeTx(tx: Transaction): Buffer {
  const raw = DecodedTx.rawOf(tx);
  if (raw) return raw;
  if (tx.data.length > TX_DATA_BYTES_MAX)
    throw new RangeError(`Payload of ${tx.data.length} bytes exceeds ${TX_DATA_BYTES_MAX}`);
  const w = new Writer(160 + tx.data.length);
  writeUnsigned(w, tx);
  w.fixed(tx.signature, SIGNATURE_BYTES);
  return w.finish();
}

/** Reads one transaction from a reader positioned at its first byte. */
export function readTx(r: Reader): Transaction {
  const start = r.offset;
  const version = r.u8();
  if (version !== TX_VERSION) r.invalid(`unknown transaction version ${version}`);
  const from = r.fixed(PUBKEY_BYTES);
  const to = r.fixed(PUBKEY_BYTES);
  const amount = r.u64();
  const nonce = r.u64();
  const data = r.bytes16(TX_DATA_BYTES_MAX);
  const signature = r.fixed(SIGNATURE_BYTES);
  return new DecodedTx(from, to, amount, nonce, data, signature, r.slice(start, r.offset));
}

export function decodeTx(buf: Buffer): Transaction {
  const r = new Reader(buf, "transaction");
  const tx = readTx(r);
  r.end();
  return tx;
}

/** The message an account signs for this transaction on the chain named by genesisHash. */
export function txSigningMessage(genesisHash: Buffer, tx: Omit<Transaction, "signature">): Buffer {
  const raw = DecodedTx.rawOf(tx);
  if (raw) return encodedTxSigningMessage(genesisHash, raw);
  const w = new Writer(160 + tx.data.length);
  writeUnsigned(w, tx);
  return sha256(TX_DOMAIN, genesisHash, w.finish());
}

/** Size of the smallest encoded transaction (no data). */
export const TX_BYTES_MIN = 1 + PUBKEY_BYTES + PUBKEY_BYTES + 8 + 8 + 2 + SIGNATURE_BYTES;

/**
 * The signing messages of encoded transactions of one chain, as {@link txSigningMessage}
 * gives them, computed through a scratch copy of each transaction's bytes after the
 * domain prefix: no Buffer per transaction, for the check workers' loop.
 */
export class TxSigningMessages {
  private scratch: Buffer;
  private readonly prefix: number;
  private readonly message = Buffer.allocUnsafeSlow(HASH_BYTES);

  constructor(genesisHash: Buffer) {
    this.prefix = TX_DOMAIN.length + genesisHash.length;
    this.scratch = Buffer.allocUnsafeSlow(this.prefix + TX_BYTES_MAX);
    TX_DOMAIN.copy(this.scratch, 0);
    genesisHash.copy(this.scratch, TX_DOMAIN.length);
  }

  /**
   * The signing message of `raw` (at least {@link TX_BYTES_MIN} bytes), in a buffer this
   * object reuses: valid until the next call.
   */
  of(raw: Buffer): Buffer {
    const end = this.prefix + raw.length - SIGNATURE_BYTES;
    // Only bytes that are no valid transaction are longer; they still get their message.
    if (end > this.scratch.length) {
      const grown = Buffer.allocUnsafeSlow(end);
      this.scratch.copy(grown, 0, 0, this.prefix);
      this.scratch = grown;
    }
    raw.copy(this.scratch, this.prefix, 0, raw.length - SIGNATURE_BYTES);
    sha256Into(this.scratch.subarray(0, end), this.message);
    return this.message;
  }
}

/** Size of the largest encoded transaction (a full data payload). */
const TX_BYTES_MAX = TX_BYTES_MIN + TX_DATA_BYTES_MAX;

function encodedTxSigningMessage(genesisHash: Buffer, raw: Buffer): Buffer {
  return sha256(TX_DOMAIN, genesisHash, raw.subarray(0, raw.length - SIGNATURE_BYTES));
}

export function txHash(tx: Transaction): Buffer {
  return sha256(encodeTx(tx));
}

/** Builds and signs a transfer. */
export function signTransfer(
  genesisHash: Buffer,
  key: { privateKey: KeyObject; publicKey: Buffer },
  to: Buffer,
  amount: bigint,
  nonce: bigint,
  data: Buffer = Buffer.alloc(0),
): Transaction {
  if (data.length > TX_DATA_BYTES_MAX)
    throw new RangeError(`Payload of ${data.length} bytes exceeds ${TX_DATA_BYTES_MAX}`);
  const unsigned = { from: key.publicKey, to, amount, nonce, data };
  return { ...unsigned, signature: signMessage(key.privateKey, txSigningMessage(genesisHash, unsigned)) };
}
