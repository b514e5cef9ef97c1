/**
 * Writing blocks into the chain: the import pipeline (links and execution here, signatures
 * and the commitment's hashing on the check workers, then the valid prefix written to the
 * state and the ledger in one transaction), and the state writes that import,
 * reorganisation and recovery share. See docs/storage.md, section 6.1.
 */
import { crashPoint, failPoint } from "../../util/crash-points.js";
import { CheckPool } from "../check-pool.js";
import { blockWeight } from "../consensus.js";
import type { Genesis } from "../genesis.js";
import {
  applyTxs,
  BlockError,
  type Changes,
  checkBody,
  checkLinks,
  checkStateRoot,
  executeBlock,
  type HeaderCheckOptions,
  StateOverlay,
} from "../validate.js";
import type { ChainView } from "./chain-types.js";
import { type ImportedBlock, ledgerItemOf, type StoredBlock } from "./imported-block.js";
import type { Commit } from "./state-store.js";

/** Options of {@link ChainStore.importBlocks}. */
export interface ImportOptions extends HeaderCheckOptions {
  /** Skip signature checks: only for blocks this process signed itself or built offline. */
  trustedSignatures?: boolean;
  /** The checks already started with {@link startBlockChecks}, for pipelining. */
  signatures?: Promise<unknown>;
}

/**
 * Starts the stateless checks of blocks (body, signatures) on the check workers. The
 * promise resolves to the first error found, or undefined; it never rejects, so it can
 * wait unobserved.
 */
export function startBlockChecks(genesis: Genesis, blocks: Buffer[]): Promise<unknown> {
  return CheckPool.for(genesis)
    .check(blocks)
    .catch((err: unknown) => err);
}

/** Executes a block against the state and writes it there. Call inside a transaction. */
export function applyToState(chain: ChainView, ib: ImportedBlock): void {
  writeExecuted(chain, [{ ib, ex: executeBlock(chain.state, chain.state.ltHash, ib.block) }]);
}

/**
 * Runs a state transaction that appends blocks to the ledger. If it fails once the ledger
 * holds them (the state's COMMIT is where a full disk usually shows: SQLite writes its log
 * then), the ledger is taken back to where it ended before, so that a running node's ledger and
 * state keep agreeing; a crash instead is reconciled when the store opens.
 */
export function commitAppend(chain: ChainView, fn: () => void): void {
  // A mark, not a truncation: cutting a segment the append sealed would copy it, and the
  // disk may be full.
  const before = chain.ledger.mark();
  try {
    chain.state.transaction(fn);
  } catch (err) {
    if (chain.ledger.tipHeight > before.count) chain.ledger.revertTo(before);
    throw err;
  }
}

/** Writes blocks already executed and checked, in chain order, to the state. Call inside a transaction. */
export function writeExecuted(chain: ChainView, items: { ib: StoredBlock; ex: Commit }[]): void {
  if (items.length === 0) return;
  let weight = chain.state.head?.weight ?? 0n;
  const blocks = items.map(({ ib, ex }) => {
    const h = ib.block.header;
    weight += blockWeight(h.height, h.proposer, chain.genesis.validatorCount);
    return { block: { height: h.height, hash: ib.hash, weight }, ex };
  });
  chain.state.applyMany(blocks, true);
  if (chain.opts.undoDepth > 0)
    chain.state.pruneUndo(blocks[blocks.length - 1]!.block.height - chain.opts.undoDepth);
}

/**
 * The body of an import, run under the store's mutex: validates and appends the blocks
 * that extend the tip (`blockAt(i)` gives block i of `bytes`), keeping those before the
 * first invalid one and throwing its error. `checks` are the stateless checks already
 * started for the batch.
 */
export async function importUnderMutex(
  chain: ChainView,
  bytes: Buffer[],
  blockAt: (i: number) => ImportedBlock,
  opts: ImportOptions,
  checks: Promise<unknown>,
): Promise<number> {
  if (bytes.length === 0) return 0;
  let parent = chain.ref(chain.ledger.tipHeight)!;
  // The first block's links before anything else: a stale or foreign block fails here.
  const first = blockAt(0);
  checkLinks(chain.genesis, parent, first.block, opts);
  const view = new StateOverlay(chain.state);
  const executed: { ib: StoredBlock; changes: Changes }[] = [];
  let failure: unknown;
  for (let i = 0; i < bytes.length; i++) {
    try {
      const ib = i === 0 ? first : blockAt(i);
      checkLinks(chain.genesis, parent, ib.block, opts);
      // Own blocks skip the workers' checks; their body is still checked here.
      if (opts.trustedSignatures) checkBody(chain.genesis, ib.block);
      const { changes } = applyTxs(view, ib.block.header.height, ib.block.txs);
      view.set(changes);
      // The header, not the block: its transactions are done with.
      executed.push({
        ib: { block: { header: ib.block.header }, bytes: ib.bytes, hash: ib.hash },
        changes,
      });
      parent = {
        height: ib.block.header.height,
        hash: ib.hash,
        timestampMs: ib.block.header.timestampMs,
      };
    } catch (err) {
      failure = err;
      break;
    }
  }
  const deltas = await CheckPool.for(chain.genesis).deltas(executed.map((e) => e.changes));
  const checkError = await checks;
  if (checkError !== undefined && !(checkError instanceof BlockError)) throw checkError;
  const valid: { ib: StoredBlock; ex: Commit }[] = [];
  let lt = chain.state.ltHash;
  for (let i = 0; i < executed.length; i++) {
    const { ib, changes } = executed[i]!;
    if (checkError?.height === ib.block.header.height) {
      failure = checkError;
      break;
    }
    lt = lt.clone();
    lt.addLanes(deltas[i]!);
    const stateRoot = lt.root();
    try {
      checkStateRoot(ib.block.header, stateRoot);
    } catch (err) {
      failure = err;
      break;
    }
    valid.push({ ib, ex: { changes, ltHash: lt, stateRoot } });
  }
  commitAppend(chain, () => {
    writeExecuted(chain, valid);
    // Durable in the ledger before the state commits: see the module comment of chain-store.ts.
    chain.ledger.append(valid.map((v) => ledgerItemOf(v.ib, chain.genesis.validatorCount)));
    crashPoint("chain.import.after-ledger-append");
    // As a COMMIT that fails on a full disk would, once the ledger holds the blocks.
    failPoint("chain.import.before-commit");
  });
  if (failure) throw failure;
  return valid.length;
}
