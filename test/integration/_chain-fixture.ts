// Shared helpers for the storage integration tests: a small genesis with real keys, a builder of fully valid blocks on any parent state, an independent model of the balances they produce, and temp-directory and file-hash utilities.
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { sealBlock, txRootOf } from "../../src/chain/block.js";
import { blockWeight, earliestTimestamp, inTurnProposer, proposerRank } from "../../src/chain/consensus.js";
import { generateKeyPair, hex, type KeyPair } from "../../src/chain/crypto.js";
import { Genesis } from "../../src/chain/genesis.js";
import type { LtHash } from "../../src/chain/lthash.js";
import { type ImportedBlock, ledgerItemOf, prepareBlock } from "../../src/chain/storage/chain-store.js";
import type { LedgerItem } from "../../src/chain/storage/ledger-store.js";
import { signTransfer } from "../../src/chain/tx.js";
import type { Account, Block, BlockHeader, Transaction } from "../../src/chain/types.js";
import { executeTxs, type ParentRef, type StateReader } from "../../src/chain/validate.js";

// 4 validators: enough for in-turn and out-of-turn proposers at every height.
const VALIDATORS = 4;
// 8 accounts: transfers rotate through them, so each block touches several accounts.
const ACCOUNTS = 8;
// 1,000,000 units each: far above what the few small transfers of a test can spend.
const INITIAL_BALANCE = 1_000_000n;
// A fixed time in the past: no block is ever "from the future", and runs are reproducible.
const GENESIS_TIME_MS = 1_700_000_000_000;

/** A genesis and the private keys behind it. */
export interface ChainFixture {
  genesis: Genesis;
  validators: KeyPair[];
  accounts: KeyPair[];
}

/** Makes a genesis with 4 validator keys and 8 funded accounts, all freshly generated. */
export function makeChainFixture(): ChainFixture {
  const validators = Array.from({ length: VALIDATORS }, () => generateKeyPair());
  const accounts = Array.from({ length: ACCOUNTS }, () => generateKeyPair());
  const genesis = Genesis.parse({
    chainId: "chainvault-integration",
    genesisTimeMs: GENESIS_TIME_MS,
    blockTimeMs: 1000,
    outOfTurnDelayMs: 500,
    maxTxsPerBlock: 100,
    validators: validators.map((v, i) => ({ name: `validator-${i}`, publicKey: hex(v.publicKey) })),
    balances: accounts.map((a) => ({ account: hex(a.publicKey), amount: INITIAL_BALANCE.toString() })),
  });
  return { genesis, validators, accounts };
}

/** The chain a new block builds on: its parent and the state after the parent. */
export interface ChainBase {
  parent: ParentRef;
  state: StateReader;
  ltHash: LtHash;
}

/** The base at genesis, for building blocks without any store. */
export function genesisBase(fx: ChainFixture): ChainBase {
  const { genesis } = fx;
  return {
    parent: { height: 0, hash: genesis.hash, timestampMs: genesis.doc.genesisTimeMs },
    state: { getAccount: (pk) => genesis.initialAccounts.get(pk.toString("hex")) },
    ltHash: genesis.initialLtHash,
  };
}

/** The base at a chain store's current tip. */
export function storeBase(store: {
  tip(): { height: number };
  ref(h: number): ParentRef | undefined;
  state: StateReader & { ltHash: LtHash };
}): ChainBase {
  const parent = store.ref(store.tip().height);
  if (!parent) throw new Error("The store has no reference for its own tip");
  return { parent, state: store.state, ltHash: store.state.ltHash };
}

export interface BuildOptions {
  /** Transfers per block; 3 unless given. */
  txsPerBlock?: number;
  /** The proposer of each height; the in-turn validator unless given. */
  proposer?: (height: number) => number;
  /** Added to every transfer amount, so that two branches from one parent hold different balances. */
  amountSalt?: bigint;
}

/** A proposer function for validators of rank 1 (out of turn: weight 1 instead of 2). */
export function outOfTurn(height: number): number {
  return (inTurnProposer(height, VALIDATORS) + 1) % VALIDATORS;
}

/**
 * Builds `count` fully valid blocks on `base`: real signed transfers, timestamps at the
 * earliest the proposer's rank allows, and state roots computed as a node computes them.
 */
export function buildBlocks(
  fx: ChainFixture,
  base: ChainBase,
  count: number,
  opts: BuildOptions = {},
): ImportedBlock[] {
  const { genesis, accounts } = fx;
  const k = opts.txsPerBlock ?? 3;
  const salt = opts.amountSalt ?? 0n;
  const overlay = new Map<string, Account>();
  const view: StateReader = {
    getAccount: (pk) => overlay.get(pk.toString("hex")) ?? base.state.getAccount(pk),
  };
  let lt = base.ltHash;
  let parent = base.parent;
  const out: ImportedBlock[] = [];
  for (let height = parent.height + 1; height <= base.parent.height + count; height++) {
    const txs: Transaction[] = [];
    for (let j = 0; j < k; j++) {
      const from = accounts[(height * k + j) % accounts.length]!;
      const to = accounts[(height * k + j + 1) % accounts.length]!;
      const nonce = view.getAccount(from.publicKey)?.nonce ?? 0n;
      const amount = BigInt(height * 10 + j + 1) + salt;
      const tx = signTransfer(genesis.hash, from, to.publicKey, amount, nonce);
      // Apply each transfer to the overlay at once, so the next one sees its nonce.
      const ex = executeTxs(view, lt, height, [tx]);
      for (const c of ex.changes.values()) overlay.set(c.pubkey.toString("hex"), c.after);
      lt = ex.ltHash;
      txs.push(tx);
    }
    const proposer = opts.proposer ? opts.proposer(height) : inTurnProposer(height, VALIDATORS);
    const rank = proposerRank(height, proposer, VALIDATORS);
    const timestampMs = earliestTimestamp(
      {
        validatorCount: VALIDATORS,
        blockTimeMs: genesis.doc.blockTimeMs,
        outOfTurnDelayMs: genesis.doc.outOfTurnDelayMs,
      },
      parent.timestampMs,
      rank,
    );
    const block = sealBlock(
      genesis.hash,
      fx.validators[proposer]!.privateKey,
      {
        height,
        prevHash: parent.hash,
        timestampMs,
        proposer,
        txRoot: txRootOf(txs),
        stateRoot: lt.root(),
        txCount: txs.length,
      },
      txs,
    );
    const ib = prepareBlock(block);
    out.push(ib);
    parent = { height, hash: ib.hash, timestampMs };
  }
  return out;
}

/** Re-signs a block after changing its header or transactions, as a faulty proposer would. */
export function resealBlock(
  fx: ChainFixture,
  block: Block,
  header: Partial<Omit<BlockHeader, "signature">>,
  txs: Transaction[] = block.txs,
): ImportedBlock {
  const { signature: _signature, ...unsigned } = block.header;
  const h = { ...unsigned, txRoot: txRootOf(txs), txCount: txs.length, ...header };
  return prepareBlock(sealBlock(fx.genesis.hash, fx.validators[h.proposer]!.privateKey, h, txs));
}

/** The ledger item a chain store would append for a block. */
export function ledgerItem(ib: ImportedBlock): LedgerItem {
  return ledgerItemOf(ib, VALIDATORS);
}

/** The weight function a chain store gives its ledger. */
export function weightOf(height: number, proposer: number): bigint {
  return blockWeight(height, proposer, VALIDATORS);
}

/**
 * The accounts after applying the transfers of `blocks` to the genesis balances, by plain
 * arithmetic: a model independent of the executor under test.
 */
export function expectedAccounts(fx: ChainFixture, blocks: ImportedBlock[]): Map<string, Account> {
  const m = new Map<string, Account>();
  for (const [k, a] of fx.genesis.initialAccounts) m.set(k, { ...a });
  for (const ib of blocks) {
    for (const tx of ib.block.txs) {
      const from = m.get(tx.from.toString("hex"))!;
      from.balance -= tx.amount;
      from.nonce += 1n;
      const key = tx.to.toString("hex");
      const to = m.get(key) ?? { balance: 0n, nonce: 0n };
      to.balance += tx.amount;
      m.set(key, to);
    }
  }
  return m;
}

/** Makes a temp directory that is removed when the test ends. */
export function tempDir(t: TestContext, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `chainvault-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** sha256 of every file under a directory, keyed by path relative to it. */
export function hashTree(dir: string, prefix = ""): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      for (const [k, v] of hashTree(p, `${prefix}${name}/`)) out.set(k, v);
    } else {
      out.set(`${prefix}${name}`, sha256File(p));
    }
  }
  return out;
}
