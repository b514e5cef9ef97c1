// Goal: prove transactions and blocks encode canonically and carry signatures bound to one chain; method: round-trip real signed values, then flip bits, rewrite length fields and swap genesis hashes and check that decoding or verification refuses them.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  blockHash,
  decodeBlock,
  encodeBlock,
  encodeHeader,
  HEADER_BYTES,
  headerSigningMessage,
  sealBlock,
  txRootOf,
} from "../../src/chain/block.js";
import { generateKeyPair, sha256, verifySync } from "../../src/chain/crypto.js";
import { DecodeError, DecodeErrorCode } from "../../src/chain/encoding.js";
import { EMPTY_ROOT } from "../../src/chain/merkle.js";
import { decodeTx, encodeTx, signTransfer, txHash, txSigningMessage } from "../../src/chain/tx.js";
import { BLOCK_BYTES_MAX, type Block, type BlockHeader, TX_DATA_BYTES_MAX } from "../../src/chain/types.js";

const GENESIS_A = sha256(Buffer.from("test genesis A"));
const GENESIS_B = sha256(Buffer.from("test genesis B"));
const sender = generateKeyPair();
const recipient = generateKeyPair();
const validator = generateKeyPair();

// Offsets from the layouts documented in tx.ts and block.ts.
const TX_AMOUNT_OFFSET = 1 + 32 + 32;
const TX_BYTES_MIN = 1 + 32 + 32 + 8 + 8 + 2 + 64;
const HEADER_TXCOUNT_OFFSET = HEADER_BYTES - 64 - 4;

function isDecodeError(code: DecodeErrorCode, pattern?: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof DecodeError, `expected a DecodeError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

function sampleBlock(dataBytes = 3): Block {
  const txs = [
    signTransfer(GENESIS_A, sender, recipient.publicKey, 10n, 0n, Buffer.alloc(dataBytes, 1)),
    signTransfer(GENESIS_A, sender, recipient.publicKey, 20n, 1n, Buffer.alloc(dataBytes, 2)),
  ];
  const header: Omit<BlockHeader, "signature"> = {
    height: 7,
    prevHash: sha256(Buffer.from("parent")),
    timestampMs: 1_700_000_000_000,
    proposer: 1,
    txRoot: txRootOf(txs),
    stateRoot: sha256(Buffer.from("state")),
    txCount: txs.length,
  };
  return sealBlock(GENESIS_A, validator.privateKey, header, txs);
}

// --- transactions ---

test("encodeTx and decodeTx round-trip every field of a signed transfer", () => {
  const tx = signTransfer(GENESIS_A, sender, recipient.publicKey, 2n ** 64n - 1n, 42n, Buffer.from("memo"));
  const bytes = encodeTx(tx);
  assert.equal(bytes.length, TX_BYTES_MIN + 4);
  // Field by field: a decoded transaction is a DecodedTx that also keeps its bytes.
  assert.deepEqual({ ...decodeTx(bytes) }, tx);
  assert.deepEqual(encodeTx(decodeTx(bytes)), bytes);
});

test("a transfer from signTransfer verifies against its sender's key and signing message", () => {
  const tx = signTransfer(GENESIS_A, sender, recipient.publicKey, 5n, 0n);
  assert.deepEqual(tx.from, sender.publicKey);
  assert.equal(verifySync(tx.from, txSigningMessage(GENESIS_A, tx), tx.signature), true);
  assert.equal(verifySync(recipient.publicKey, txSigningMessage(GENESIS_A, tx), tx.signature), false);
});

test("flipping one bit of the encoded amount makes the signature fail", () => {
  const tx = signTransfer(GENESIS_A, sender, recipient.publicKey, 1000n, 3n);
  const bytes = Buffer.from(encodeTx(tx));
  bytes[TX_AMOUNT_OFFSET + 7]! ^= 0x01;
  const tampered = decodeTx(bytes);
  assert.equal(tampered.amount, 1001n);
  assert.equal(verifySync(tampered.from, txSigningMessage(GENESIS_A, tampered), tampered.signature), false);
});

test("a transaction signed for one genesis hash does not verify on another chain", () => {
  const tx = signTransfer(GENESIS_A, sender, recipient.publicKey, 5n, 0n);
  assert.equal(verifySync(tx.from, txSigningMessage(GENESIS_A, tx), tx.signature), true);
  assert.equal(verifySync(tx.from, txSigningMessage(GENESIS_B, tx), tx.signature), false);
});

test("decodeTx accepts a 1024-byte payload and refuses 1025 bytes with DECODE_INVALID", () => {
  const ok = signTransfer(GENESIS_A, sender, recipient.publicKey, 1n, 0n, Buffer.alloc(TX_DATA_BYTES_MAX, 9));
  assert.equal(decodeTx(encodeTx(ok)).data.length, TX_DATA_BYTES_MAX);
  // Build the oversized encoding a hostile peer could send: grow the data length prefix and the data by hand.
  const good = encodeTx(ok);
  const prefixAt = 1 + 32 + 32 + 8 + 8;
  const oversized = Buffer.concat([
    good.subarray(0, prefixAt),
    Buffer.from([0x04, 0x01]),
    Buffer.alloc(TX_DATA_BYTES_MAX + 1, 9),
    good.subarray(good.length - 64),
  ]);
  assert.throws(
    () => decodeTx(oversized),
    isDecodeError(DecodeErrorCode.Invalid, /1025 bytes exceeds the limit of 1024/),
  );
});

test("signTransfer refuses a payload over 1024 bytes with a RangeError", () => {
  assert.throws(
    () => signTransfer(GENESIS_A, sender, recipient.publicKey, 1n, 0n, Buffer.alloc(TX_DATA_BYTES_MAX + 1)),
    RangeError,
  );
});

test("decodeTx refuses trailing bytes after the signature", () => {
  const bytes = encodeTx(signTransfer(GENESIS_A, sender, recipient.publicKey, 1n, 0n));
  assert.throws(
    () => decodeTx(Buffer.concat([bytes, Buffer.from([0])])),
    isDecodeError(DecodeErrorCode.Invalid, /1 trailing bytes/),
  );
});

test("decodeTx refuses a transaction cut short by one byte", () => {
  const bytes = encodeTx(signTransfer(GENESIS_A, sender, recipient.publicKey, 1n, 0n));
  assert.throws(
    () => decodeTx(bytes.subarray(0, bytes.length - 1)),
    isDecodeError(DecodeErrorCode.Truncated),
  );
});

test("decodeTx refuses an unknown transaction version", () => {
  const bytes = Buffer.from(encodeTx(signTransfer(GENESIS_A, sender, recipient.publicKey, 1n, 0n)));
  bytes[0] = 2;
  assert.throws(
    () => decodeTx(bytes),
    isDecodeError(DecodeErrorCode.Invalid, /unknown transaction version 2/),
  );
});

test("txHash differs for transfers that differ only in nonce", () => {
  const a = signTransfer(GENESIS_A, sender, recipient.publicKey, 1n, 0n);
  const b = signTransfer(GENESIS_A, sender, recipient.publicKey, 1n, 1n);
  assert.notDeepEqual(txHash(a), txHash(b));
  assert.deepEqual(txHash(a), sha256(encodeTx(a)));
});

// --- blocks ---

test("encodeBlock and decodeBlock round-trip a sealed block with its transactions", () => {
  const block = sampleBlock();
  const bytes = encodeBlock(block);
  const decoded = decodeBlock(bytes);
  assert.deepEqual({ ...decoded, txs: decoded.txs.map((t) => ({ ...t })) }, block);
  assert.equal(decoded.txs.length, 2);
  assert.deepEqual(encodeBlock(decoded), bytes);
  assert.deepEqual(bytes.subarray(0, HEADER_BYTES), encodeHeader(block.header));
});

test("an empty block round-trips and encodes to exactly HEADER_BYTES", () => {
  const block = sealBlock(
    GENESIS_A,
    validator.privateKey,
    {
      height: 1,
      prevHash: GENESIS_A,
      timestampMs: 0,
      proposer: 0,
      txRoot: txRootOf([]),
      stateRoot: EMPTY_ROOT,
      txCount: 0,
    },
    [],
  );
  const bytes = encodeBlock(block);
  assert.equal(bytes.length, HEADER_BYTES);
  assert.deepEqual(decodeBlock(bytes), block);
});

test("blockHash changes when any header field changes, signature included", () => {
  const { header } = sampleBlock();
  const base = blockHash(header);
  assert.deepEqual(blockHash({ ...header }), base);
  const flip = (b: Buffer): Buffer => {
    const c = Buffer.from(b);
    c[c.length - 1]! ^= 1;
    return c;
  };
  const variants: Record<keyof BlockHeader, BlockHeader> = {
    height: { ...header, height: header.height + 1 },
    prevHash: { ...header, prevHash: flip(header.prevHash) },
    timestampMs: { ...header, timestampMs: header.timestampMs + 1 },
    proposer: { ...header, proposer: header.proposer + 1 },
    txRoot: { ...header, txRoot: flip(header.txRoot) },
    stateRoot: { ...header, stateRoot: flip(header.stateRoot) },
    txCount: { ...header, txCount: header.txCount + 1 },
    signature: { ...header, signature: flip(header.signature) },
  };
  for (const [field, changed] of Object.entries(variants)) {
    assert.notDeepEqual(blockHash(changed), base, `blockHash ignores ${field}`);
  }
});

test("sealBlock's signature verifies with headerSigningMessage for its own chain and header only", () => {
  const { header } = sampleBlock();
  const verifies = (key: Buffer, genesisHash: Buffer, signed: Omit<BlockHeader, "signature">): boolean =>
    verifySync(key, headerSigningMessage(genesisHash, signed), header.signature);
  assert.equal(verifies(validator.publicKey, GENESIS_A, header), true);
  assert.equal(verifies(validator.publicKey, GENESIS_B, header), false);
  assert.equal(verifies(validator.publicKey, GENESIS_A, { ...header, height: header.height + 1 }), false);
  assert.equal(verifies(sender.publicKey, GENESIS_A, header), false);
});

test("decodeBlock refuses a txCount larger than the transactions present", () => {
  // Small transactions: the up-front count check catches the lie before any transaction is read.
  const small = Buffer.from(encodeBlock(sampleBlock()));
  small.writeUInt32BE(3, HEADER_TXCOUNT_OFFSET);
  assert.throws(
    () => decodeBlock(small),
    isDecodeError(DecodeErrorCode.Invalid, /transaction count 3 exceeds/),
  );

  // A huge count must be refused up front too, without looping over four billion reads.
  small.writeUInt32BE(0xffff_ffff, HEADER_TXCOUNT_OFFSET);
  assert.throws(() => decodeBlock(small), isDecodeError(DecodeErrorCode.Invalid));

  // Large transactions pass the cheap check, so the missing third one must surface as truncation.
  const large = Buffer.from(encodeBlock(sampleBlock(200)));
  large.writeUInt32BE(3, HEADER_TXCOUNT_OFFSET);
  assert.throws(() => decodeBlock(large), isDecodeError(DecodeErrorCode.Truncated));
});

test("decodeBlock refuses a transaction length prefix that does not match the transaction", () => {
  const bytes = encodeBlock(sampleBlock());
  const len = bytes.readUInt16BE(HEADER_BYTES);
  for (const wrong of [len + 1, len - 1]) {
    const bad = Buffer.from(bytes);
    bad.writeUInt16BE(wrong, HEADER_BYTES);
    assert.throws(
      () => decodeBlock(bad),
      isDecodeError(
        DecodeErrorCode.Invalid,
        new RegExp(`transaction 0 length prefix ${wrong} does not match`),
      ),
    );
  }
});

test("decodeBlock refuses trailing bytes after the last transaction", () => {
  const bytes = encodeBlock(sampleBlock());
  assert.throws(
    () => decodeBlock(Buffer.concat([bytes, Buffer.from([0])])),
    isDecodeError(DecodeErrorCode.Invalid, /trailing bytes/),
  );
});

test("decodeBlock refuses a block larger than BLOCK_BYTES_MAX before decoding it", () => {
  assert.throws(
    () => decodeBlock(Buffer.alloc(BLOCK_BYTES_MAX + 1)),
    isDecodeError(DecodeErrorCode.Invalid, /exceeds 4194304/),
  );
});

test("decodeBlock refuses an unknown block version", () => {
  const bytes = Buffer.from(encodeBlock(sampleBlock()));
  bytes[0] = 9;
  assert.throws(() => decodeBlock(bytes), isDecodeError(DecodeErrorCode.Invalid, /unknown block version 9/));
});

test("txRootOf commits to transaction order", () => {
  const { txs } = sampleBlock();
  assert.notDeepEqual(txRootOf(txs), txRootOf([...txs].reverse()));
});
