/** The chain's data types. Byte fields are Buffers of the sizes in crypto.ts. */

/** A signed transfer with an optional data payload. */
export interface Transaction {
  /** Sender's raw ed25519 public key: accounts are named by their key. */
  readonly from: Buffer;
  readonly to: Buffer;
  readonly amount: bigint;
  /** Equals the sender's count of earlier transactions. */
  readonly nonce: bigint;
  /** Calldata, at most {@link TX_DATA_BYTES_MAX} bytes. */
  readonly data: Buffer;
  readonly signature: Buffer;
}

export interface BlockHeader {
  height: number;
  prevHash: Buffer;
  timestampMs: number;
  /** Index of the proposer in the genesis validator list. */
  proposer: number;
  txRoot: Buffer;
  stateRoot: Buffer;
  txCount: number;
  signature: Buffer;
}

export interface Block {
  header: BlockHeader;
  txs: Transaction[];
}

/** An account as the state stores it. */
export interface Account {
  balance: bigint;
  nonce: bigint;
}

/** What a node knows of a chain's tip: enough for fork choice. */
export interface ChainTip {
  height: number;
  hash: Buffer;
  /** Sum of block weights from genesis: in-turn blocks weigh 2, out-of-turn blocks 1. */
  weight: bigint;
}

// 1 KiB: real chains carry calldata; it also lets a ledger grow to realistic sizes.
export const TX_DATA_BYTES_MAX = 1024;
// 4 MiB: bounds the memory a peer can make us hold for one block.
export const BLOCK_BYTES_MAX = 4 * 1024 * 1024;
