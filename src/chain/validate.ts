/**
 * Block validation and the state transition, as functions over data: a header against
 * its parent and the schedule, the signatures, and the transactions against a state view.
 * Storage calls these; they do no I/O except the thread-pool signature checks.
 */
import { CodedError } from "../util/errors.js";
import { scanBlock, txRootOf, txRootOfEncoded } from "./block.js";
import { earliestTimestamp, proposerRank } from "./consensus.js";
import { hex, PUBKEY_BYTES, SIGNATURE_BYTES, verifySync } from "./crypto.js";
import type { Genesis } from "./genesis.js";
import { accountLeaf, type LtHash } from "./lthash.js";
import { TxSigningMessages } from "./tx.js";
import type { Account, Block, BlockHeader, Transaction } from "./types.js";

export enum BlockErrorCode {
  Decode = "BLOCK_DECODE",
  BadHeight = "BLOCK_BAD_HEIGHT",
  BadParent = "BLOCK_BAD_PARENT",
  BadProposer = "BLOCK_BAD_PROPOSER",
  BadTimestamp = "BLOCK_BAD_TIMESTAMP",
  FutureTimestamp = "BLOCK_FUTURE_TIMESTAMP",
  TooManyTxs = "BLOCK_TOO_MANY_TXS",
  BadTxRoot = "BLOCK_BAD_TX_ROOT",
  BadSignature = "BLOCK_BAD_SIGNATURE",
  BadTxSignature = "BLOCK_BAD_TX_SIGNATURE",
  BadNonce = "BLOCK_BAD_NONCE",
  InsufficientBalance = "BLOCK_INSUFFICIENT_BALANCE",
  BalanceOverflow = "BLOCK_BALANCE_OVERFLOW",
  BadStateRoot = "BLOCK_BAD_STATE_ROOT",
}

/** A block that breaks a rule; `height` and `code` say which and where. */
export class BlockError extends CodedError<BlockErrorCode> {
  get height(): number {
    return this.detail.height as number;
  }
}

function fail(
  code: BlockErrorCode,
  height: number,
  reason: string,
  extra: Record<string, unknown> = {},
): never {
  throw new BlockError({ code, height, ...extra }, `Invalid block ${height}: ${reason}`);
}

/** What validation needs to know of the parent block. */
export interface ParentRef {
  height: number;
  hash: Buffer;
  timestampMs: number;
}

export interface HeaderCheckOptions {
  /** Wall-clock time for the future-timestamp check; omit when validating history offline. */
  nowMs?: number;
  /** How far ahead of nowMs a timestamp may be. */
  maxFutureMs?: number;
}

// 2 s: clock skew tolerated between nodes before a block counts as from the future.
const MAX_FUTURE_MS_DEFAULT = 2000;

/** Checks everything about a block that needs neither signatures nor state. */
export function checkHeader(
  genesis: Genesis,
  parent: ParentRef,
  block: Block,
  opts: HeaderCheckOptions = {},
): void {
  checkLinks(genesis, parent, block, opts);
  checkBody(genesis, block);
}

/** Checks how a block follows its parent: height, parent hash, proposer and timestamps. */
export function checkLinks(
  genesis: Genesis,
  parent: ParentRef,
  block: Block,
  opts: HeaderCheckOptions = {},
): void {
  const h = block.header;
  const n = genesis.validatorCount;
  if (h.height !== parent.height + 1)
    fail(BlockErrorCode.BadHeight, h.height, `height follows ${parent.height}`);
  if (!h.prevHash.equals(parent.hash)) {
    fail(BlockErrorCode.BadParent, h.height, `parent hash ${hex(h.prevHash)} is not ${hex(parent.hash)}`);
  }
  if (h.proposer >= n)
    fail(
      BlockErrorCode.BadProposer,
      h.height,
      `proposer index ${h.proposer} is not a validator (${n} validators)`,
    );
  const rank = proposerRank(h.height, h.proposer, n);
  const earliest = earliestTimestamp(
    {
      validatorCount: n,
      blockTimeMs: genesis.doc.blockTimeMs,
      outOfTurnDelayMs: genesis.doc.outOfTurnDelayMs,
    },
    parent.timestampMs,
    rank,
  );
  if (h.timestampMs < earliest) {
    fail(
      BlockErrorCode.BadTimestamp,
      h.height,
      `timestamp ${h.timestampMs} is before ${earliest}, the earliest for rank ${rank}`,
    );
  }
  if (opts.nowMs !== undefined && h.timestampMs > opts.nowMs + (opts.maxFutureMs ?? MAX_FUTURE_MS_DEFAULT)) {
    fail(
      BlockErrorCode.FutureTimestamp,
      h.height,
      `timestamp ${h.timestampMs} is ahead of the local clock ${opts.nowMs}`,
    );
  }
}

/**
 * Checks a decoded block's body against its header: the transaction count, the block
 * limit and the transaction root. (The check workers run the same rules on the bytes:
 * {@link checkEncodedBlock}.)
 */
export function checkBody(genesis: Genesis, block: Block): void {
  const h = block.header;
  if (block.txs.length !== h.txCount)
    fail(BlockErrorCode.Decode, h.height, "transaction count differs from the header");
  checkLimitAndRoot(genesis, h, () => txRootOf(block.txs));
}

/** The block limit on transactions, then the transaction root (computed only if within the limit). */
function checkLimitAndRoot(genesis: Genesis, h: BlockHeader, root: () => Buffer): void {
  if (h.txCount > genesis.doc.maxTxsPerBlock) {
    fail(
      BlockErrorCode.TooManyTxs,
      h.height,
      `${h.txCount} transactions exceed the limit of ${genesis.doc.maxTxsPerBlock}`,
    );
  }
  if (!root().equals(h.txRoot)) fail(BlockErrorCode.BadTxRoot, h.height, "transaction root does not match");
}

/**
 * The stateless checks of an encoded block, as a check worker runs them: the block's
 * framing, the transaction limit and root, the proposer's signature and every
 * transaction's signature, read from the bytes without decoding the transactions into
 * objects. Throws a DecodeError for bytes without the block layout, else a BlockError for
 * the first rule broken, in the order {@link checkBody} and the signatures are checked.
 */
export function checkEncodedBlock(genesis: Genesis, bytes: Buffer): void {
  const b = scanBlock(genesis.hash, bytes);
  const h = b.header;
  checkLimitAndRoot(genesis, h, () => txRootOfEncoded(b.txs));
  const key = genesis.validatorKeys[h.proposer];
  if (!key) fail(BlockErrorCode.BadProposer, h.height, `proposer index ${h.proposer} is not a validator`);
  if (!verifySync(key, b.signingMessage, h.signature))
    fail(BlockErrorCode.BadSignature, h.height, "proposer signature does not verify");
  const messages = signingMessagesOf(genesis);
  for (let t = 0; t < b.txs.length; t++) {
    const raw = b.txs[t]!;
    const from = raw.subarray(1, 1 + PUBKEY_BYTES);
    if (!verifySync(from, messages.of(raw), raw.subarray(raw.length - SIGNATURE_BYTES)))
      fail(BlockErrorCode.BadTxSignature, h.height, `transaction ${t} signature does not verify`, { tx: t });
  }
}

// The last chain's signing-message scratch: a process checks one chain's blocks.
let messages: { genesis: Genesis; of: TxSigningMessages } | undefined;

function signingMessagesOf(genesis: Genesis): TxSigningMessages {
  if (messages?.genesis !== genesis) messages = { genesis, of: new TxSigningMessages(genesis.hash) };
  return messages.of;
}

/** Reads accounts of the state a block applies to. */
export interface StateReader {
  getAccount(pubkey: Buffer): Account | undefined;
}

/** A state with the changes of blocks executed but not yet written laid over it. */
export class StateOverlay implements StateReader {
  private readonly accounts = new Map<string, Account>();

  constructor(private readonly base: StateReader) {}

  getAccount(pubkey: Buffer): Account | undefined {
    return this.accounts.get(pubkey.toString("latin1")) ?? this.base.getAccount(pubkey);
  }

  /** Lays a block's changes over the state. */
  set(changes: Changes): void {
    for (const [key, c] of changes) this.accounts.set(key, c.after);
  }
}

/** One account's value before and after a block; `before` undefined means it did not exist. */
export interface AccountChange {
  pubkey: Buffer;
  before: Account | undefined;
  after: Account;
}

/** The accounts a block's transactions changed, keyed by the latin1 of the public key. */
export type Changes = Map<string, AccountChange>;

/** The result of applying transactions: the changed accounts and the new commitment. */
export interface Execution {
  changes: Changes;
  ltHash: LtHash;
  stateRoot: Buffer;
  /** The transactions applied, in order (all of them unless `skipInvalid`). */
  included: Transaction[];
}

const U64_MAX = (1n << 64n) - 1n;

/**
 * Applies transactions in order to a view of the state and commits the result: the new
 * state root over `base`. With `skipInvalid` (block building) a transaction that does not
 * apply is left out; otherwise it fails the block.
 */
export function executeTxs(
  state: StateReader,
  base: LtHash,
  height: number,
  txs: Transaction[],
  opts: { skipInvalid?: boolean } = {},
): Execution {
  const { changes, included } = applyTxs(state, height, txs, opts);
  const lt = base.clone();
  for (const c of changes.values()) {
    if (c.before) lt.remove(accountLeaf(c.pubkey, c.before));
    lt.add(accountLeaf(c.pubkey, c.after));
  }
  return { changes, ltHash: lt, stateRoot: lt.root(), included };
}

/**
 * The state transition without the commitment: which accounts the transactions change,
 * and to what. The commitment (LtHash) can then be computed elsewhere, on the check workers.
 */
export function applyTxs(
  state: StateReader,
  height: number,
  txs: Transaction[],
  opts: { skipInvalid?: boolean } = {},
): { changes: Changes; included: Transaction[] } {
  const changes: Changes = new Map();
  // Each account is read from the state at most once per call.
  const loaded = new Map<string, Account | undefined>();
  const get = (pk: Buffer): { key: string; acct: Account | undefined } => {
    const key = pk.toString("latin1");
    const c = changes.get(key);
    if (c) return { key, acct: c.after };
    if (!loaded.has(key)) loaded.set(key, state.getAccount(pk));
    return { key, acct: loaded.get(key) };
  };
  const put = (key: string, pk: Buffer, acct: Account): void => {
    const c = changes.get(key);
    if (c) c.after = acct;
    else changes.set(key, { pubkey: pk, before: loaded.get(key), after: acct });
  };
  const included: Transaction[] = [];
  for (let i = 0; i < txs.length; i++) {
    const tx = txs[i]!;
    const reject = (code: BlockErrorCode, reason: string): void => {
      if (!opts.skipInvalid) fail(code, height, `transaction ${i}: ${reason}`, { tx: i });
    };
    const from = get(tx.from);
    const sender = from.acct ?? { balance: 0n, nonce: 0n };
    if (tx.nonce !== sender.nonce) {
      reject(BlockErrorCode.BadNonce, `nonce ${tx.nonce} but the account is at ${sender.nonce}`);
      continue;
    }
    if (sender.balance < tx.amount) {
      reject(BlockErrorCode.InsufficientBalance, `amount ${tx.amount} exceeds balance ${sender.balance}`);
      continue;
    }
    put(from.key, tx.from, { balance: sender.balance - tx.amount, nonce: sender.nonce + 1n });
    const to = get(tx.to);
    const recipient = to.acct ?? { balance: 0n, nonce: 0n };
    if (recipient.balance + tx.amount > U64_MAX) {
      // Undo the debit before refusing: the sender's change must not stand alone.
      put(from.key, tx.from, sender);
      reject(BlockErrorCode.BalanceOverflow, "recipient balance would overflow 64 bits");
      continue;
    }
    put(to.key, tx.to, { balance: recipient.balance + tx.amount, nonce: recipient.nonce });
    included.push(tx);
  }
  return { changes, included };
}

/** Applies a block's transactions and checks the state root its header commits to. */
export function executeBlock(state: StateReader, base: LtHash, block: Block): Execution {
  const ex = executeTxs(state, base, block.header.height, block.txs);
  checkStateRoot(block.header, ex.stateRoot);
  return ex;
}

/** Throws BLOCK_BAD_STATE_ROOT unless `root` is the state root the block's header commits to. */
export function checkStateRoot(header: BlockHeader, root: Buffer): void {
  if (!root.equals(header.stateRoot)) {
    fail(
      BlockErrorCode.BadStateRoot,
      header.height,
      `state root ${hex(root)} differs from the header's ${hex(header.stateRoot)}`,
    );
  }
}
