/**
 * Where the ledger generator starts: a new devnet with an empty chain in node-0, or in
 * append mode an existing devnet's node-0, locked, with its tip and the load accounts'
 * nonces read from its state. Either way the result holds the open store and the
 * validators' signing keys that generator.ts builds blocks with.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { silentLogger } from "../util/logger.js";
import { loadNodeConfig, nodePaths } from "./config.js";
import { importPrivateKeyPem, type KeyPair } from "./crypto.js";
import { type DevnetFile, devnetInit, readDevnet } from "./devnet.js";
import type { GenerateOptions } from "./generator-options.js";
import { Genesis } from "./genesis.js";
import { acquireLock } from "./run-node.js";
import { ChainStore } from "./storage/chain-store.js";

/** Where generation starts: an open store, the keys that sign, and the chain's tip. */
export interface ChainStart {
  dn: DevnetFile;
  genesis: Genesis;
  nodeDir: string;
  store: ChainStore;
  /** Validator keys by validator index. */
  vkeys: KeyPair[];
  /** The load accounts' next nonces, by account index. */
  nonces: bigint[];
  parent: { height: number; hash: Buffer; ts: number };
  release: () => void;
}

function validatorKeys(dir: string, dn: DevnetFile): KeyPair[] {
  return dn.nodes
    .filter((n) => n.validator)
    .map((n) => importPrivateKeyPem(readFileSync(join(dir, n.dataDir, "keys", "validator.pem"), "utf8")));
}

export async function createDevnet(
  dir: string,
  o: GenerateOptions,
  reserveBlocks: number,
): Promise<ChainStart> {
  const blockTimeMs = o.blockTimeMs ?? 1000;
  // Genesis far enough in the past that every generated block's slot has passed, and the
  // reserved slots after them too.
  const genesisTimeMs = Date.now() - (o.blocks + reserveBlocks + 10) * blockTimeMs;
  const dn = await devnetInit(dir, {
    validators: o.validators ?? 4,
    blockTimeMs,
    genesisTimeMs,
    loadAccounts: 256,
    maxTxsPerBlock: Math.max(2000, o.txsPerBlock),
    ...(o.segmentBytes ? { segmentBytes: o.segmentBytes } : {}),
  });
  const genesis = Genesis.load(join(dir, "genesis.json"));
  const nodeDir = join(dir, dn.nodes[0]!.dataDir);
  const store = ChainStore.open(
    genesis,
    { dataDir: nodeDir, segmentBytes: o.segmentBytes ?? 64 * 1024 * 1024, undoDepth: 0 },
    silentLogger(),
  );
  return {
    dn,
    genesis,
    nodeDir,
    store,
    vkeys: validatorKeys(dir, dn),
    nonces: dn.loadAccounts.map(() => 0n),
    parent: { height: 0, hash: genesis.hash, ts: genesisTimeMs },
    release: () => {},
  };
}

export async function openForAppend(dir: string, o: GenerateOptions): Promise<ChainStart> {
  const dn = readDevnet(dir);
  const nodeDir = join(dir, dn.nodes[0]!.dataDir);
  const genesis = Genesis.load(nodePaths(nodeDir).genesis);
  const cfg = loadNodeConfig(nodeDir);
  if (o.txsPerBlock > genesis.doc.maxTxsPerBlock)
    throw new RangeError(
      `--txs-per-block must be at most the chain's limit of ${genesis.doc.maxTxsPerBlock}, got ${o.txsPerBlock}`,
    );
  const release = acquireLock(nodePaths(nodeDir).lock);
  let store: ChainStore | undefined;
  try {
    store = ChainStore.open(
      genesis,
      { dataDir: nodeDir, segmentBytes: cfg.segmentBytes, undoDepth: cfg.undoDepth },
      silentLogger(),
    );
    const tip = store.ref(store.tip().height)!;
    const lastTs = tip.timestampMs + o.blocks * genesis.doc.blockTimeMs;
    if (lastTs > Date.now()) {
      const room = Math.max(0, Math.floor((Date.now() - tip.timestampMs) / genesis.doc.blockTimeMs));
      throw new RangeError(
        `Cannot append ${o.blocks} blocks to ${nodeDir}: only ${room} past block slots follow its tip at height ${tip.height}; generate the chain with --reserve-blocks ${o.blocks} or more`,
      );
    }
    const state = store.state;
    const nonces = dn.loadAccounts.map((a) => state.getAccount(Buffer.from(a.publicKey, "hex"))?.nonce ?? 0n);
    return {
      dn,
      genesis,
      nodeDir,
      store,
      vkeys: validatorKeys(dir, dn),
      nonces,
      parent: { height: tip.height, hash: tip.hash, ts: tip.timestampMs },
      release,
    };
  } catch (err) {
    await store?.close();
    release();
    throw err;
  }
}
