/**
 * The options and result of the ledger generator (`chainvault devnet generate`), in their
 * own module so that the generator (generator.ts) and the opening of the chain it extends
 * (generator-start.ts) share them without importing each other.
 */
import type { DevnetFile } from "./devnet-file.js";

export interface GenerateOptions {
  /** Blocks to write: the whole chain, or with `append` the blocks added to it. */
  blocks: number;
  txsPerBlock: number;
  payloadBytes?: number;
  /** Validators of a new devnet (ignored with `append`). */
  validators?: number;
  /** Block interval of a new devnet (ignored with `append`). */
  blockTimeMs?: number;
  /** Ledger segment size of a new devnet (ignored with `append`: node-0's config holds it). */
  segmentBytes?: number;
  /**
   * Block slots left free between the last generated block and now, so that a later append
   * of up to this many blocks still carries timestamps in the past (a node refuses blocks
   * from the future). Ignored with `append`.
   */
  reserveBlocks?: number;
  /**
   * Continue the chain of the devnet in `dir`: open node-0's data, read its tip and the load
   * accounts' nonces from its state, and append `blocks` more valid blocks. The node must
   * not be running; its lock is held while the generator writes.
   *
   * @example
   * await generateChain(dir, { blocks: 200, txsPerBlock: 10, reserveBlocks: 50 });
   * await generateChain(dir, { blocks: 50, txsPerBlock: 10, append: true });
   */
  append?: boolean;
  /** Called every few hundred blocks with the height reached. */
  onProgress?: (height: number, ledgerBytes: number) => void;
}

export interface GenerateResult {
  devnet: DevnetFile;
  nodeDir: string;
  /** The chain's height afterwards. */
  height: number;
  /** Bytes of blocks this call wrote (with `append`, the appended blocks only). */
  ledgerBytes: number;
  elapsedMs: number;
}
