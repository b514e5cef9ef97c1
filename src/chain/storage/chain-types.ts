/**
 * The chain store's errors and options, and {@link ChainView}: the parts of an open chain
 * store that its modules (import, reorganisation, recovery, checkpoints) work on.
 * Re-exported from chain-store.ts, which callers import.
 */
import { CodedError } from "../../util/errors.js";
import type { Genesis } from "../genesis.js";
import type { ChainTip } from "../types.js";
import type { ParentRef } from "../validate.js";
import type { LedgerStore } from "./ledger-store.js";
import type { StateStore } from "./state-store.js";

export enum ChainStoreErrorCode {
  NotBetter = "CHAIN_REORG_NOT_BETTER",
  Mismatch = "CHAIN_STATE_LEDGER_MISMATCH",
  BelowUndo = "CHAIN_BELOW_UNDO_DEPTH",
}

export class ChainStoreError extends CodedError<ChainStoreErrorCode> {}

export interface ChainStoreOptions {
  /** The node's data directory; the store uses `ledger/`, `state/` and `checkpoints/` in it. */
  dataDir: string;
  /** Size at which a ledger segment is sealed. */
  segmentBytes: number;
  /** Blocks of undo history kept; 0 keeps all. */
  undoDepth: number;
}

// 64 MiB: large enough that a 2 GiB ledger is ~32 files, small enough to rebuild one fast.
export const SEGMENT_BYTES_DEFAULT = 64 * 1024 * 1024;

/** What the chain store's modules see of an open store (the `ChainStore` passes itself). */
export interface ChainView {
  readonly genesis: Genesis;
  readonly opts: ChainStoreOptions;
  readonly ledger: LedgerStore;
  readonly state: StateStore;
  readonly stateRoot: Buffer;
  /** The chain's tip as fork choice sees it. */
  tip(): ChainTip;
  /** Height, hash and timestamp of a block on the chain, genesis included. */
  ref(height: number): ParentRef | undefined;
}
