// Goal: prove the check workers' stateless checks, which read a block from its bytes without decoding its transactions, accept exactly the valid blocks and name the rule each broken block breaks; method: seal real blocks for a real genesis, break one thing at a time in their bytes, and compare with the decoded checks.
import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeBlock, sealBlock, txRootOf, txRootOfEncoded } from "../../src/chain/block.js";
import { generateKeyPair, hex, sha256 } from "../../src/chain/crypto.js";
import { DecodeError } from "../../src/chain/encoding.js";
import { Genesis } from "../../src/chain/genesis.js";
import { decodeTx, encodeTx, signTransfer, TxSigningMessages, txSigningMessage } from "../../src/chain/tx.js";
import type { Transaction } from "../../src/chain/types.js";
import { BlockError, BlockErrorCode, checkEncodedBlock } from "../../src/chain/validate.js";

const validators = [generateKeyPair(), generateKeyPair()];
const sender = generateKeyPair();
const genesis = new Genesis({
  chainId: "encoded-checks",
  genesisTimeMs: 1_700_000_000_000,
  blockTimeMs: 500,
  outOfTurnDelayMs: 500,
  maxTxsPerBlock: 3,
  validators: validators.map((v, i) => ({ name: `v${i}`, publicKey: hex(v.publicKey) })),
  balances: [{ account: hex(sender.publicKey), amount: "1000" }],
});

function transfers(n: number): Transaction[] {
  return Array.from({ length: n }, (_, i) =>
    signTransfer(genesis.hash, sender, generateKeyPair().publicKey, 1n, BigInt(i), Buffer.alloc(i, 7)),
  );
}

function blockBytes(
  txs: Transaction[],
  o: { proposer?: number; key?: number; txRoot?: Buffer } = {},
): Buffer {
  const proposer = o.proposer ?? 1;
  const header = {
    height: 1,
    prevHash: genesis.hash,
    timestampMs: genesis.doc.genesisTimeMs + 500,
    proposer,
    txRoot: o.txRoot ?? txRootOf(txs),
    stateRoot: genesis.stateRoot,
    txCount: txs.length,
  };
  return encodeBlock(sealBlock(genesis.hash, validators[o.key ?? proposer]!.privateKey, header, txs));
}

function refusedWith(bytes: Buffer, code: BlockErrorCode, tx?: number): void {
  assert.throws(
    () => checkEncodedBlock(genesis, bytes),
    (err: unknown) =>
      err instanceof BlockError &&
      err.code === code &&
      err.height === 1 &&
      (tx === undefined || err.detail.tx === tx),
    code,
  );
}

test("a valid block passes, with and without transactions, and its encoded root is the decoded one", () => {
  for (const n of [0, 1, 3]) {
    const txs = transfers(n);
    assert.deepEqual(txRootOfEncoded(txs.map(encodeTx)), txRootOf(txs));
    checkEncodedBlock(genesis, blockBytes(txs));
  }
});

test("each broken rule is named: limit, root, proposer, proposer signature, transaction signature", () => {
  refusedWith(blockBytes(transfers(4)), BlockErrorCode.TooManyTxs);
  refusedWith(blockBytes(transfers(2), { txRoot: txRootOf(transfers(2)) }), BlockErrorCode.BadTxRoot);
  refusedWith(blockBytes(transfers(1), { proposer: 5, key: 0 }), BlockErrorCode.BadProposer);
  refusedWith(blockBytes(transfers(1), { key: 0 }), BlockErrorCode.BadSignature);
  // The second transaction's signature flipped, the root computed over the flipped copy.
  const txs = transfers(3);
  const signature = Buffer.from(txs[1]!.signature);
  signature[5] = signature[5]! ^ 1;
  const tampered = [txs[0]!, { ...txs[1]!, signature }, txs[2]!];
  refusedWith(blockBytes(tampered), BlockErrorCode.BadTxSignature, 1);
  // A flipped byte in the signed part of the header breaks the proposer's signature.
  const bytes = Buffer.from(blockBytes(transfers(1)));
  bytes[10] = bytes[10]! ^ 1;
  refusedWith(bytes, BlockErrorCode.BadSignature);
});

test("bytes without the block layout are a decode error: truncated, trailing, a too-short transaction", () => {
  const valid = blockBytes(transfers(2));
  const short = Buffer.from(valid);
  // The first transaction's length prefix (right after the header) claims 10 bytes.
  short.writeUInt16BE(10, 1 + 8 + 32 + 8 + 2 + 32 + 32 + 4 + 64);
  for (const bytes of [valid.subarray(0, valid.length - 1), Buffer.concat([valid, Buffer.from([0])]), short])
    assert.throws(() => checkEncodedBlock(genesis, bytes), DecodeError);
});

test("the workers' signing messages equal the decoded transactions' ones, and bytes longer than any transaction still get theirs", () => {
  const messages = new TxSigningMessages(genesis.hash);
  for (const tx of transfers(3))
    assert.deepEqual(messages.of(encodeTx(tx)), txSigningMessage(genesis.hash, tx));
  // 5 KiB: past the scratch sized for the largest valid transaction, which must grow
  // and keep its domain prefix.
  const long = Buffer.alloc(5000, 9);
  const expected = sha256(Buffer.from("chainvault/tx/v1"), genesis.hash, long.subarray(0, long.length - 64));
  assert.deepEqual(messages.of(long), expected);
  const again = encodeTx(transfers(1)[0]!);
  assert.deepEqual(messages.of(again), txSigningMessage(genesis.hash, decodeTx(again)));
});
