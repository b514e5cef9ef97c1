/**
 * A devnet: N validators (and optional non-validating nodes) of one chain, each a separate
 * process on loopback, described by `<dir>/devnet.json`. Library functions behind
 * `chainvault devnet init/up/status/down`.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { writeFileAtomic } from "../util/fs-atomic.js";
import type { NodeConfig } from "./config.js";
import { exportPrivateKeyPem, generateKeyPair, hex } from "./crypto.js";
import { DevnetError, DevnetErrorCode, type DevnetFile, type DevnetNode } from "./devnet-file.js";
import type { GenesisDoc } from "./genesis.js";

// The devnet's description and its reader live in devnet-file.ts, the node processes'
// supervision in devnet-run.ts; both are re-exported so that callers import from here.
export { DevnetError, DevnetErrorCode, type DevnetFile, type DevnetNode, readDevnet } from "./devnet-file.js";
export {
  cliCommand,
  type DevnetNodeStatus,
  devnetDown,
  devnetStatus,
  devnetUp,
  nodeEnv,
  spawnNode,
  waitHealthy,
} from "./devnet-run.js";

export interface DevnetInitOptions {
  validators: number;
  /** Non-validating nodes beside the validators. */
  observers?: number;
  blockTimeMs?: number;
  outOfTurnDelayMs?: number;
  segmentBytes?: number;
  loadAccounts?: number;
  maxTxsPerBlock?: number;
  genesisTimeMs?: number;
  chainId?: string;
  peerPollMs?: number;
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** Creates the devnet's genesis, keys and node directories. */
export async function devnetInit(dir: string, o: DevnetInitOptions): Promise<DevnetFile> {
  if (!Number.isInteger(o.validators) || o.validators < 1 || o.validators > 64)
    throw new RangeError(`Validators must be 1..64, got ${o.validators}`);
  if (existsSync(join(dir, "devnet.json"))) {
    throw new DevnetError(
      { code: DevnetErrorCode.Exists, dir },
      `Cannot init devnet: ${dir} already holds one; pick another directory or remove it`,
    );
  }
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new DevnetError(
      { code: DevnetErrorCode.Exists, dir },
      `Cannot init devnet: ${dir} is not empty; pick an empty or new directory`,
    );
  }
  mkdirSync(dir, { recursive: true });
  const vkeys = Array.from({ length: o.validators }, generateKeyPair);
  const accts = Array.from({ length: o.loadAccounts ?? 64 }, generateKeyPair);
  const blockTimeMs = o.blockTimeMs ?? 1000;
  const genesis: GenesisDoc = {
    chainId: o.chainId ?? `devnet-${randomBytes(4).toString("hex")}`,
    genesisTimeMs: o.genesisTimeMs ?? Date.now(),
    blockTimeMs,
    outOfTurnDelayMs: o.outOfTurnDelayMs ?? Math.max(200, blockTimeMs),
    maxTxsPerBlock: o.maxTxsPerBlock ?? 2000,
    validators: vkeys.map((k, i) => ({ name: `validator-${i}`, publicKey: hex(k.publicKey) })),
    // 10^15 units each: transfers of 1 never run an account dry in a benchmark's lifetime.
    balances: accts.map((k) => ({ account: hex(k.publicKey), amount: "1000000000000000" })),
  };
  const total = o.validators + (o.observers ?? 0);
  const ports: number[] = [];
  while (ports.length < total) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const nodes: DevnetNode[] = ports.map((port, i) => ({
    id: `node-${i}`,
    dataDir: `node-${i}`,
    url: `http://127.0.0.1:${port}`,
    validator: i < o.validators,
  }));
  const genesisJson = `${JSON.stringify(genesis, null, 2)}\n`;
  writeFileAtomic(join(dir, "genesis.json"), genesisJson);
  nodes.forEach((n, i) => {
    const nd = join(dir, n.dataDir);
    mkdirSync(join(nd, "keys"), { recursive: true, mode: 0o700 });
    const cfg: Partial<NodeConfig> = {
      nodeId: n.id,
      host: "127.0.0.1",
      port: ports[i]!,
      peers: nodes.filter((p) => p !== n).map((p) => p.url),
      ...(o.segmentBytes ? { segmentBytes: o.segmentBytes } : {}),
      ...(o.peerPollMs ? { peerPollMs: o.peerPollMs } : {}),
    };
    if (n.validator) {
      writeFileAtomic(join(nd, "keys", "validator.pem"), exportPrivateKeyPem(vkeys[i]!.privateKey), 0o600);
      cfg.validatorKey = "keys/validator.pem";
    }
    writeFileAtomic(join(nd, "genesis.json"), genesisJson);
    writeFileAtomic(join(nd, "admin.token"), `${randomBytes(32).toString("hex")}\n`, 0o600);
    writeFileAtomic(join(nd, "node.json"), `${JSON.stringify(cfg, null, 2)}\n`);
  });
  const file: DevnetFile = {
    chainId: genesis.chainId,
    nodes,
    loadAccounts: accts.map((k) => ({
      publicKey: hex(k.publicKey),
      privateKeyPem: exportPrivateKeyPem(k.privateKey),
    })),
  };
  writeFileAtomic(join(dir, "devnet.json"), `${JSON.stringify(file, null, 2)}\n`, 0o600);
  return file;
}

/** The admin token of a devnet node, for tools that run beside it. */
export function adminTokenOf(dir: string, n: DevnetNode): string {
  return readFileSync(join(dir, n.dataDir, "admin.token"), "utf8").trim();
}
