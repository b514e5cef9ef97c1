/**
 * Full validation of a node's data directory, offline: every record's checksum, the hash
 * chain, the proposer schedule, every signature (on all cores), every transaction root and
 * the state root of every block by replay from genesis; then the node's state database
 * against the replayed state. The report names the first bad height, the kind of fault,
 * and the file and offset where it was found.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { decodeBlock, HEADER_BYTES } from "../chain/block.js";
import { CheckPool } from "../chain/check-pool.js";
import { blockWeight } from "../chain/consensus.js";
import { hex, sha256 } from "../chain/crypto.js";
import type { Genesis } from "../chain/genesis.js";
import type { LtHash } from "../chain/lthash.js";
import { readSegments } from "../chain/storage/segment-reader.js";
import { StateStore } from "../chain/storage/state-store.js";
import type { Account, Block, BlockHeader } from "../chain/types.js";
import {
  applyTxs,
  BlockError,
  type Changes,
  checkLinks,
  checkStateRoot,
  type ParentRef,
  type StateReader,
} from "../chain/validate.js";
import { errorMessage } from "../util/errors.js";

/** Where and why validation stopped. */
export interface ValidationFault {
  height: number;
  /** A block rule code (BLOCK_*), or LEDGER_* for storage faults, or STATE_* for the state database. */
  code: string;
  message: string;
  file?: string;
  offset?: number;
}

export interface ValidationReport {
  ok: boolean;
  /** Highest height that validated (0: none). */
  validHeight: number;
  validHash: string;
  stateRoot: string;
  weight: string;
  blocks: number;
  txs: number;
  ledgerBytes: number;
  /** True if the state database matches the replayed state (checked only when the ledger validates). */
  stateDbMatches: boolean | null;
  fault?: ValidationFault;
  elapsedMs: number;
}

export interface ValidateOptions {
  /** Skip the comparison with state/state.db. */
  skipStateDb?: boolean;
  onProgress?: (height: number) => void;
}

// 256 blocks per batch: enough work to keep every check worker busy while the main thread
// executes the next batch; bounds memory to a few batches of blocks.
const BATCH_BLOCKS = 256;
// 2 batches ahead: the workers always have queued checks while the main thread waits on
// the oldest batch's results.
const AHEAD_BATCHES = 2;

class MemoryState implements StateReader {
  readonly accounts = new Map<string, Account>();
  getAccount(pk: Buffer): Account | undefined {
    return this.accounts.get(pk.toString("hex"));
  }
}

/** A block read from the ledger; past execution only its header is kept, not its transactions. */
interface ReadBlock {
  header: BlockHeader;
  bytes: Buffer;
  hash: Buffer;
  file: string;
  offset: number;
}

/** A batch read, linked and executed in order, whose checks and commitment are on the workers. */
interface Batch {
  blocks: ReadBlock[];
  /** The changes of each block executed (a prefix of `blocks` if one failed to execute). */
  changes: Changes[];
  checks: Promise<unknown>;
  deltas: Promise<Uint16Array[]>;
}

export async function validateNodeData(
  dataDir: string,
  genesis: Genesis,
  o: ValidateOptions = {},
): Promise<ValidationReport> {
  const t0 = Date.now();
  const pool = CheckPool.for(genesis);
  const state = new MemoryState();
  for (const [k, a] of genesis.initialAccounts) state.accounts.set(k, a);
  const lt: LtHash = genesis.initialLtHash.clone();
  const genesisRef: ParentRef = { height: 0, hash: genesis.hash, timestampMs: genesis.doc.genesisTimeMs };
  // The last block that passed every check, and the last one linked and executed.
  let parent = genesisRef;
  let linked = genesisRef;
  let weight = 0n;
  let blocks = 0;
  let txs = 0;
  let ledgerBytes = 0;
  let fault: ValidationFault | undefined;
  const n = genesis.validatorCount;
  const faultOf = (b: ReadBlock, err: unknown): ValidationFault => ({
    height: b.header.height,
    code: (err as { code?: string }).code ?? "BLOCK_INVALID",
    message: errorMessage(err),
    file: b.file,
    offset: b.offset,
  });

  // The first fault met while reading or executing; it counts only if every block before
  // it passes the checks still in flight.
  let pendingFault: ValidationFault | undefined;
  /**
   * Links and executes one block as it is read, so that its transactions are garbage by
   * the next block; only its header and changes stay for the batch. False if it fails.
   */
  let changes: Changes[] = [];
  const execute = (b: ReadBlock, block: Block): boolean => {
    try {
      checkLinks(genesis, linked, block);
      const ex = applyTxs(state, block.header.height, block.txs);
      for (const c of ex.changes.values()) state.accounts.set(c.pubkey.toString("hex"), c.after);
      changes.push(ex.changes);
    } catch (err) {
      pendingFault = faultOf(b, err);
      return false;
    }
    linked = { height: block.header.height, hash: b.hash, timestampMs: block.header.timestampMs };
    return true;
  };

  /** Takes a batch's checks and commitment in order; false at the first block that fails. */
  const finish = async (p: Batch): Promise<boolean> => {
    const [checkError, deltas] = await Promise.all([p.checks, p.deltas]);
    if (checkError !== undefined && !(checkError instanceof BlockError)) throw checkError;
    for (let i = 0; i < p.changes.length; i++) {
      const b = p.blocks[i]!;
      const h = b.header.height;
      try {
        if (checkError?.height === h) throw checkError;
        lt.addLanes(deltas[i]!);
        checkStateRoot(b.header, lt.root());
      } catch (err) {
        fault = faultOf(b, err);
        return false;
      }
      parent = { height: h, hash: b.hash, timestampMs: b.header.timestampMs };
      weight += blockWeight(h, b.header.proposer, n);
      blocks++;
      txs += b.header.txCount;
      ledgerBytes += b.bytes.length;
    }
    o.onProgress?.(parent.height);
    return true;
  };

  const ledgerDir = join(dataDir, "ledger");
  let batch: ReadBlock[] = [];
  // Batches executed whose checks and commitment are still on the workers.
  const inflight: Batch[] = [];
  let stopped = false;
  /** Hands the executed batch's checks and commitment to the workers; false once a batch fails. */
  const submit = async (): Promise<boolean> => {
    inflight.push({
      blocks: batch,
      changes,
      checks: pool.check(batch.map((b) => b.bytes)).catch((err: unknown) => err),
      deltas: pool.deltas(changes),
    });
    batch = [];
    changes = [];
    while (inflight.length > AHEAD_BATCHES) {
      if (!(await finish(inflight.shift()!))) {
        stopped = true;
        return false;
      }
    }
    return true;
  };
  let expected = 1;
  if (existsSync(ledgerDir)) {
    for (const e of readSegments(ledgerDir)) {
      if (e.kind === "seal") continue;
      if (e.kind === "fault") {
        pendingFault = {
          height: expected,
          code: "LEDGER_CORRUPT",
          message: `Ledger fault before block ${expected}: ${e.reason}`,
          file: e.file,
          offset: e.offset,
        };
        break;
      }
      let block: Block;
      try {
        if (e.height !== expected) throw new Error(`record holds height ${e.height}, expected ${expected}`);
        block = decodeBlock(e.payload);
        if (block.header.height !== e.height)
          throw new Error(`block says height ${block.header.height} in a record for ${e.height}`);
      } catch (err) {
        pendingFault = {
          height: expected,
          code: "LEDGER_CORRUPT",
          message: `Block ${expected} cannot be read: ${errorMessage(err)}`,
          file: e.file,
          offset: e.offset,
        };
        break;
      }
      expected++;
      const read: ReadBlock = {
        header: block.header,
        bytes: e.payload,
        hash: sha256(e.payload.subarray(0, HEADER_BYTES)),
        file: e.file,
        offset: e.offset,
      };
      if (!execute(read, block)) break;
      batch.push(read);
      if (batch.length >= BATCH_BLOCKS && !(await submit())) break;
    }
  }
  // A fault met while reading or executing leaves the blocks before it in `batch`: they still count.
  if (!stopped && batch.length > 0) await submit();
  while (!stopped && inflight.length > 0) stopped = !(await finish(inflight.shift()!));
  if (!stopped) fault = pendingFault;

  let stateDbMatches: boolean | null = null;
  if (!fault && !o.skipStateDb && existsSync(join(dataDir, "state", "state.db"))) {
    const st = new StateStore(join(dataDir, "state", "state.db"), genesis, { readonly: true });
    try {
      const head = st.head;
      const sameHead = (head?.height ?? 0) === parent.height && (head ? head.hash.equals(parent.hash) : true);
      stateDbMatches =
        sameHead && st.recomputeLtHash().root().equals(lt.root()) && st.ltHash.root().equals(lt.root());
      if (!stateDbMatches) {
        fault = {
          height: parent.height,
          code: "STATE_MISMATCH",
          message: `The state database (head ${head?.height ?? 0}) does not match the ledger replayed to ${parent.height}; restart the node to reconcile it, or restore the state from a backup`,
          file: join(dataDir, "state", "state.db"),
        };
      }
    } finally {
      st.close();
    }
  }
  return {
    ok: !fault,
    validHeight: parent.height,
    validHash: hex(parent.hash),
    stateRoot: hex(lt.root()),
    weight: weight.toString(),
    blocks,
    txs,
    ledgerBytes,
    stateDbMatches,
    ...(fault ? { fault } : {}),
    elapsedMs: Date.now() - t0,
  };
}
