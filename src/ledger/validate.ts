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
import { blockWeight } from "../chain/consensus.js";
import { hex, sha256 } from "../chain/crypto.js";
import type { Genesis } from "../chain/genesis.js";
import type { LtHash } from "../chain/lthash.js";
import { readSegments } from "../chain/storage/segment-reader.js";
import { StateStore } from "../chain/storage/state-store.js";
import type { Account, Block } from "../chain/types.js";
import {
  checkHeader,
  checkSignatures,
  executeBlock,
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

// 512 blocks per signature batch: enough work to keep the thread pool full while the
// main thread replays the previous batch; bounds memory to a few batches of blocks.
const BATCH_BLOCKS = 256;
// 2 batches ahead: the thread pool always has queued work while the main thread replays.
const AHEAD_BATCHES = 2;

class MemoryState implements StateReader {
  readonly accounts = new Map<string, Account>();
  getAccount(pk: Buffer): Account | undefined {
    return this.accounts.get(pk.toString("hex"));
  }
}

interface Pending {
  blocks: { block: Block; hash: Buffer; file: string; offset: number; size: number }[];
  sigs: Promise<unknown>;
}

export async function validateNodeData(
  dataDir: string,
  genesis: Genesis,
  o: ValidateOptions = {},
): Promise<ValidationReport> {
  const t0 = Date.now();
  const state = new MemoryState();
  for (const [k, a] of genesis.initialAccounts) state.accounts.set(k, a);
  let lt: LtHash = genesis.initialLtHash.clone();
  let parent: ParentRef = { height: 0, hash: genesis.hash, timestampMs: genesis.doc.genesisTimeMs };
  let weight = 0n;
  let blocks = 0;
  let txs = 0;
  let ledgerBytes = 0;
  let fault: ValidationFault | undefined;
  const n = genesis.validatorCount;

  const startSigs = (batch: Pending["blocks"]): Pending => {
    const sigs = checkSignatures(
      genesis,
      batch.map((b) => b.block),
    ).then(
      () => undefined,
      (err: unknown) => err,
    );
    return { blocks: batch, sigs };
  };

  const replay = async (p: Pending): Promise<boolean> => {
    const sigErr = (await p.sigs) as
      | { detail?: { height?: number; code?: string }; message?: string }
      | undefined;
    for (const b of p.blocks) {
      const h = b.block.header.height;
      try {
        if (sigErr?.detail?.height === h) throw sigErr;
        checkHeader(genesis, parent, b.block);
        const ex = executeBlock(state, lt, b.block);
        for (const c of ex.changes.values()) state.accounts.set(c.pubkey.toString("hex"), c.after);
        lt = ex.ltHash;
      } catch (err) {
        fault = {
          height: h,
          code: (err as { code?: string }).code ?? "BLOCK_INVALID",
          message: errorMessage(err),
          file: b.file,
          offset: b.offset,
        };
        return false;
      }
      parent = { height: h, hash: b.hash, timestampMs: b.block.header.timestampMs };
      weight += blockWeight(h, b.block.header.proposer, n);
      blocks++;
      txs += b.block.txs.length;
      ledgerBytes += b.size;
    }
    o.onProgress?.(parent.height);
    return true;
  };

  const ledgerDir = join(dataDir, "ledger");
  let batch: Pending["blocks"] = [];
  // Batches whose signatures are verifying while an earlier one replays.
  const inflight: Pending[] = [];
  let stopped = false;
  let expected = 1;
  if (existsSync(ledgerDir)) {
    for (const e of readSegments(ledgerDir)) {
      if (e.kind === "seal") continue;
      if (e.kind === "fault") {
        fault = {
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
        fault = {
          height: expected,
          code: "LEDGER_CORRUPT",
          message: `Block ${expected} cannot be read: ${errorMessage(err)}`,
          file: e.file,
          offset: e.offset,
        };
        break;
      }
      expected++;
      batch.push({
        block,
        hash: sha256(e.payload.subarray(0, HEADER_BYTES)),
        file: e.file,
        offset: e.offset,
        size: e.payload.length,
      });
      if (batch.length >= BATCH_BLOCKS) {
        inflight.push(startSigs(batch));
        batch = [];
        if (inflight.length > AHEAD_BATCHES && !(await replay(inflight.shift()!))) {
          stopped = true;
          break;
        }
      }
    }
  }
  // A fault found while reading counts only if every block before it replays; a replay
  // fault (stopped) is already the first one.
  if (!stopped) {
    const readFault = fault;
    fault = undefined;
    if (batch.length > 0) inflight.push(startSigs(batch));
    while (!stopped && inflight.length > 0) stopped = !(await replay(inflight.shift()!));
    if (!stopped) fault = readFault;
  }

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
