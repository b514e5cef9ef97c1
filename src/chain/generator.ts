/**
 * The ledger generator: writes a valid chain into a new devnet's first node directory,
 * offline and fast, for benchmarks and tests. Every block is in turn and fully valid: the
 * transactions are real signed transfers between the devnet's funded accounts, and the
 * state root is computed exactly as a node computes it. A node starts from the result and
 * peers sync from it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { silentLogger } from "../util/logger.js";
import { sealBlock, txRootOf } from "./block.js";
import { importPrivateKeyPem, type KeyPair } from "./crypto.js";
import { type DevnetFile, devnetInit } from "./devnet.js";
import { Genesis } from "./genesis.js";
import { ChainStore, prepareBlock } from "./storage/chain-store.js";
import { signTransfer } from "./tx.js";
import type { Account, Transaction } from "./types.js";
import { executeTxs, type StateReader } from "./validate.js";
import { Watermark } from "./watermark.js";

export interface GenerateOptions {
  blocks: number;
  txsPerBlock: number;
  payloadBytes?: number;
  validators?: number;
  blockTimeMs?: number;
  segmentBytes?: number;
  /** Called every few hundred blocks with the height reached. */
  onProgress?: (height: number, ledgerBytes: number) => void;
}

export interface GenerateResult {
  devnet: DevnetFile;
  nodeDir: string;
  height: number;
  ledgerBytes: number;
  elapsedMs: number;
}

// 256 blocks per commit: one fsync per batch keeps the generator I/O-light.
const COMMIT_BLOCKS = 256;

export async function generateChain(dir: string, o: GenerateOptions): Promise<GenerateResult> {
  if (!Number.isInteger(o.blocks) || o.blocks < 1)
    throw new RangeError(`--blocks must be a positive integer, got ${o.blocks}`);
  if (!Number.isInteger(o.txsPerBlock) || o.txsPerBlock < 0)
    throw new RangeError(`--txs-per-block must be 0 or more, got ${o.txsPerBlock}`);
  const t0 = Date.now();
  const blockTimeMs = o.blockTimeMs ?? 1000;
  // Genesis far enough in the past that every generated block's slot has passed.
  const genesisTimeMs = Date.now() - (o.blocks + 10) * blockTimeMs;
  const validators = o.validators ?? 4;
  const dn = await devnetInit(dir, {
    validators,
    blockTimeMs,
    genesisTimeMs,
    loadAccounts: 256,
    maxTxsPerBlock: Math.max(2000, o.txsPerBlock),
    ...(o.segmentBytes ? { segmentBytes: o.segmentBytes } : {}),
  });
  const genesis = Genesis.load(join(dir, "genesis.json"));
  const vkeys = dn.nodes
    .filter((n) => n.validator)
    .map((n) => importPrivateKeyPem(readPem(join(dir, n.dataDir, "keys", "validator.pem"))));
  const accounts: KeyPair[] = dn.loadAccounts.map((a) => importPrivateKeyPem(a.privateKeyPem));
  const nonces = accounts.map(() => 0n);
  const nodeDir = join(dir, dn.nodes[0]!.dataDir);
  const store = ChainStore.open(
    genesis,
    { dataDir: nodeDir, segmentBytes: o.segmentBytes ?? 64 * 1024 * 1024, undoDepth: 0 },
    silentLogger(),
  );
  const payloadBytes = o.payloadBytes ?? 0;
  let cursor = 0;
  let ledgerBytes = 0;
  try {
    let batch: ReturnType<typeof prepareBlock>[] = [];
    let state = { parentHash: genesis.hash, ts: genesisTimeMs };
    // Blocks execute against an overlay of the uncommitted batch, so a whole batch is
    // committed (and fsynced) at once; the store re-executes it and checks every root.
    const overlay = new Map<string, Account>();
    const view: StateReader = {
      getAccount: (pk) => overlay.get(pk.toString("hex")) ?? store.state.getAccount(pk),
    };
    let lt = store.state.ltHash;
    for (let height = 1; height <= o.blocks; height++) {
      const txs: Transaction[] = [];
      for (let i = 0; i < o.txsPerBlock; i++) {
        const a = cursor++ % accounts.length;
        const to = accounts[(a + 1) % accounts.length]!;
        // Each payload is its own buffer (a transaction keeps a reference) and differs per
        // transaction, like real calldata, so that deduplication has no easy win.
        const data = Buffer.allocUnsafe(payloadBytes);
        fillPayload(data, height * 65536 + i);
        txs.push(signTransfer(genesis.hash, accounts[a]!, to.publicKey, 1n, nonces[a]!, data));
        nonces[a]!++;
      }
      const ex = executeTxs(view, lt, height, txs);
      for (const c of ex.changes.values()) overlay.set(c.pubkey.toString("hex"), c.after);
      lt = ex.ltHash;
      const proposer = height % validators;
      const ts = state.ts + blockTimeMs;
      const block = sealBlock(
        genesis.hash,
        vkeys[proposer]!.privateKey,
        {
          height,
          prevHash: state.parentHash,
          timestampMs: ts,
          proposer,
          txRoot: txRootOf(txs),
          stateRoot: ex.stateRoot,
          txCount: txs.length,
        },
        txs,
      );
      const ib = prepareBlock(block);
      batch.push(ib);
      ledgerBytes += ib.bytes.length;
      state = { parentHash: ib.hash, ts };
      if (batch.length >= COMMIT_BLOCKS || height === o.blocks) {
        await store.importBlocks(batch, { trustedSignatures: true });
        batch = [];
        overlay.clear();
        lt = store.state.ltHash;
        o.onProgress?.(height, ledgerBytes);
      }
    }
    for (const n of dn.nodes.filter((x) => x.validator)) {
      // Every validator signed some of these heights: none may sign them again.
      new Watermark(join(dir, n.dataDir, "keys", "watermark.json")).advance(o.blocks);
    }
  } finally {
    await store.close();
  }
  return { devnet: dn, nodeDir, height: o.blocks, ledgerBytes, elapsedMs: Date.now() - t0 };
}

/** Fills a buffer with cheap pseudo-random bytes (xorshift32) seeded by `seed`. */
function fillPayload(b: Buffer, seed: number): void {
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= b.length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  for (; i < b.length; i++) b[i] = x & 0xff;
}

function readPem(path: string): string {
  return readFileSync(path, "utf8");
}
