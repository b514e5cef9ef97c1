/**
 * The ledger generator: writes a valid chain into a new devnet's first node directory,
 * offline and fast, for benchmarks and tests. Every block is in turn and fully valid: the
 * transactions are real signed transfers between the devnet's funded accounts, and the
 * state root is computed exactly as a node computes it. A node starts from the result and
 * peers sync from it. In append mode it continues an existing devnet's chain instead.
 */
import { join } from "node:path";
import { sealBlock, txRootOf } from "./block.js";
import { importPrivateKeyPem, type KeyPair } from "./crypto.js";
import type { GenerateOptions, GenerateResult } from "./generator-options.js";
import { type ChainStart, createDevnet, openForAppend } from "./generator-start.js";
import { SignerPool } from "./signer-pool.js";
import { prepareBlock } from "./storage/chain-store.js";
import { txSigningMessage } from "./tx.js";
import type { Transaction } from "./types.js";
import { executeTxs, StateOverlay } from "./validate.js";
import { Watermark } from "./watermark.js";

// The options and result types live in generator-options.ts, the opening of a new or
// existing chain in generator-start.ts; the types are re-exported so callers import from here.
export type { GenerateOptions, GenerateResult } from "./generator-options.js";

// 256 blocks per commit: one fsync per batch keeps the generator I/O-light.
const COMMIT_BLOCKS = 256;

/**
 * Writes `o.blocks` valid blocks: a new devnet in `dir` with its chain in node-0, or with
 * `o.append` more blocks on top of that devnet's chain. Validators' signing watermarks are
 * raised to the new height, so no validator signs these heights again.
 */
export async function generateChain(dir: string, o: GenerateOptions): Promise<GenerateResult> {
  if (!Number.isInteger(o.blocks) || o.blocks < 1)
    throw new RangeError(`--blocks must be a positive integer, got ${o.blocks}`);
  if (!Number.isInteger(o.txsPerBlock) || o.txsPerBlock < 0)
    throw new RangeError(`--txs-per-block must be 0 or more, got ${o.txsPerBlock}`);
  const reserveBlocks = o.reserveBlocks ?? 0;
  if (!Number.isInteger(reserveBlocks) || reserveBlocks < 0)
    throw new RangeError(`--reserve-blocks must be 0 or more, got ${reserveBlocks}`);
  const t0 = Date.now();
  const start = o.append ? await openForAppend(dir, o) : await createDevnet(dir, o, reserveBlocks);
  let ledgerBytes: number;
  try {
    ledgerBytes = await extendChain(start, o);
    for (const n of start.dn.nodes.filter((x) => x.validator)) {
      // Every validator signed some of these heights: none may sign them again.
      const wm = new Watermark(join(dir, n.dataDir, "keys", "watermark.json"));
      if (wm.height < start.parent.height + o.blocks) wm.advance(start.parent.height + o.blocks);
    }
  } finally {
    await start.store.close();
    start.release();
  }
  return {
    devnet: start.dn,
    nodeDir: start.nodeDir,
    height: start.parent.height + o.blocks,
    ledgerBytes,
    elapsedMs: Date.now() - t0,
  };
}

/** Builds, signs and commits `o.blocks` blocks on top of `s.parent`; returns their bytes. */
async function extendChain(s: ChainStart, o: GenerateOptions): Promise<number> {
  const { genesis, store, vkeys, nonces } = s;
  const accounts: KeyPair[] = s.dn.loadAccounts.map((a) => importPrivateKeyPem(a.privateKeyPem));
  const validators = genesis.validatorCount;
  const blockTimeMs = genesis.doc.blockTimeMs;
  const payloadBytes = o.payloadBytes ?? 0;
  const first = s.parent.height + 1;
  const last = s.parent.height + o.blocks;
  let cursor = 0;
  let ledgerBytes = 0;
  const signer = new SignerPool(s.dn.loadAccounts.map((a) => a.privateKeyPem));

  // Unsigned transactions for a range of heights: nonces follow from the order alone, so
  // the next range can be prepared and signed (on worker threads) while this one executes.
  type Unsigned = Omit<Transaction, "signature"> & { account: number };
  const prepare = (h0: number, h1: number): { txs: Unsigned[][]; signatures: Promise<Uint8Array> } => {
    const txs: Unsigned[][] = [];
    const accountIdx: number[] = [];
    const messages: Buffer[] = [];
    for (let height = h0; height <= h1; height++) {
      const block: Unsigned[] = [];
      for (let i = 0; i < o.txsPerBlock; i++) {
        const a = cursor++ % accounts.length;
        // Each payload is its own buffer (a transaction keeps a reference) and differs per
        // transaction, like real calldata, so that deduplication has no easy win.
        const data = Buffer.allocUnsafe(payloadBytes);
        fillPayload(data, height * 65536 + i);
        const tx = {
          from: accounts[a]!.publicKey,
          to: accounts[(a + 1) % accounts.length]!.publicKey,
          amount: 1n,
          nonce: nonces[a]!,
          data,
          account: a,
        };
        nonces[a]!++;
        block.push(tx);
        accountIdx.push(a);
        messages.push(txSigningMessage(genesis.hash, tx));
      }
      txs.push(block);
    }
    return { txs, signatures: signer.sign(Uint32Array.from(accountIdx), Buffer.concat(messages)) };
  };

  try {
    let parent = { hash: s.parent.hash, ts: s.parent.ts };
    let lt = store.state.ltHash;
    let next = prepare(first, Math.min(last, first + COMMIT_BLOCKS - 1));
    for (let h0 = first; h0 <= last; h0 += COMMIT_BLOCKS) {
      const h1 = Math.min(last, h0 + COMMIT_BLOCKS - 1);
      const current = next;
      if (h1 < last) next = prepare(h1 + 1, Math.min(last, h1 + COMMIT_BLOCKS));
      const sigs = await current.signatures;
      // Blocks of the batch execute against an overlay of the ones before them, and the
      // whole batch is committed (and fsynced) at once with the executions computed here.
      const view = new StateOverlay(store.state);
      const built: { ib: ReturnType<typeof prepareBlock>; ex: ReturnType<typeof executeTxs> }[] = [];
      let k = 0;
      for (let height = h0; height <= h1; height++) {
        const txs: Transaction[] = current.txs[height - h0]!.map(({ account: _a, ...u }) => ({
          ...u,
          signature: Buffer.from(sigs.subarray(k * 64, ++k * 64)),
        }));
        const ex = executeTxs(view, lt, height, txs);
        view.set(ex.changes);
        lt = ex.ltHash;
        const proposer = height % validators;
        const ts = parent.ts + blockTimeMs;
        const block = sealBlock(
          genesis.hash,
          vkeys[proposer]!.privateKey,
          {
            height,
            prevHash: parent.hash,
            timestampMs: ts,
            proposer,
            txRoot: txRootOf(txs),
            stateRoot: ex.stateRoot,
            txCount: txs.length,
          },
          txs,
        );
        const ib = prepareBlock(block);
        built.push({ ib, ex });
        ledgerBytes += ib.bytes.length;
        parent = { hash: ib.hash, ts };
      }
      await store.appendBuilt(built);
      o.onProgress?.(h1, ledgerBytes);
    }
  } finally {
    await signer.close();
  }
  return ledgerBytes;
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
