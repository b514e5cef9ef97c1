/**
 * A devnet: N validators (and optional non-validating nodes) of one chain, each a separate
 * process on loopback, described by `<dir>/devnet.json`. Library functions behind
 * `chainvault devnet init/up/status/down`.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CodedError } from "../util/errors.js";
import { writeFileAtomic } from "../util/fs-atomic.js";
import { isAlive } from "../util/process.js";
import { NodeClient, type NodeStatus } from "./client.js";
import type { NodeConfig } from "./config.js";
import { exportPrivateKeyPem, generateKeyPair, hex } from "./crypto.js";
import type { GenesisDoc } from "./genesis.js";

export enum DevnetErrorCode {
  Exists = "DEVNET_EXISTS",
  NotFound = "DEVNET_NOT_FOUND",
  StartFailed = "DEVNET_START_FAILED",
  Running = "DEVNET_RUNNING",
}

export class DevnetError extends CodedError<DevnetErrorCode> {}

export interface DevnetNode {
  id: string;
  dataDir: string;
  url: string;
  validator: boolean;
}

export interface DevnetFile {
  chainId: string;
  nodes: DevnetNode[];
  /** Funded accounts for the transaction load; test keys, never for real value. */
  loadAccounts: { publicKey: string; privateKeyPem: string }[];
}

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

export function readDevnet(dir: string): DevnetFile {
  const path = join(dir, "devnet.json");
  if (!existsSync(path)) {
    throw new DevnetError(
      { code: DevnetErrorCode.NotFound, dir },
      `No devnet at ${dir}: ${path} is missing; create one with chainvault devnet init ${dir}`,
    );
  }
  return JSON.parse(readFileSync(path, "utf8")) as DevnetFile;
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

/** The command that runs the chainvault CLI in a child process, built or from source. */
export function cliCommand(): string[] {
  // CHAINVAULT_NODE_FLAGS passes flags to child Node processes, e.g. "--cpu-prof" for profiling.
  const flags = (process.env.CHAINVAULT_NODE_FLAGS ?? "").split(" ").filter(Boolean);
  const built = fileURLToPath(new URL("../cli/main.js", import.meta.url));
  if (existsSync(built)) return [process.execPath, ...flags, built];
  return [
    process.execPath,
    ...flags,
    "--import",
    "tsx",
    fileURLToPath(new URL("../cli/main.ts", import.meta.url)),
  ];
}

/**
 * The environment of a node process: the caller's, with glibc's allocator set as
 * bin/chainvault sets it (unless the caller chose otherwise), so that the megabyte
 * buffers of block ranges are reused instead of mapped and faulted in afresh each time:
 * a node serving a sync spends a third less CPU with it (bench/chain).
 */
export function nodeEnv(): NodeJS.ProcessEnv {
  return {
    MALLOC_MMAP_THRESHOLD_: "8388608",
    MALLOC_TRIM_THRESHOLD_: "67108864",
    MALLOC_ARENA_MAX: "2",
    ...process.env,
  };
}

interface RunFile {
  nodes: { id: string; pid: number }[];
  load: number | null;
}

/** Starts one node of a devnet as a detached process; returns its pid. */
export function spawnNode(dir: string, n: DevnetNode): number {
  const nd = resolve(dir, n.dataDir);
  mkdirSync(join(nd, "logs"), { recursive: true });
  const out = openSync(join(nd, "logs", "process.out"), "a");
  const [cmd, ...args] = cliCommand();
  const child = spawn(cmd!, [...args, "node", "start", "--data", nd], {
    detached: true,
    stdio: ["ignore", out, out],
    env: nodeEnv(),
  });
  child.unref();
  return child.pid!;
}

export async function waitHealthy(url: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const c = new NodeClient(url);
  while (Date.now() < deadline) {
    try {
      await c.health(500);
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
}

/** Starts every node (and the load generator if `loadTps` > 0) and waits until all answer. */
export async function devnetUp(
  dir: string,
  o: { loadTps?: number; payloadBytes?: number } = {},
): Promise<RunFile> {
  const dn = readDevnet(dir);
  const runPath = join(dir, "run.json");
  if (existsSync(runPath)) {
    const prev = JSON.parse(readFileSync(runPath, "utf8")) as RunFile;
    if (prev.nodes.some((n) => isAlive(n.pid))) {
      throw new DevnetError(
        { code: DevnetErrorCode.Running, dir },
        `Devnet ${dir} is already running; stop it with chainvault devnet down ${dir}`,
      );
    }
  }
  const run: RunFile = { nodes: dn.nodes.map((n) => ({ id: n.id, pid: spawnNode(dir, n) })), load: null };
  writeFileAtomic(runPath, `${JSON.stringify(run)}\n`);
  const ok = await Promise.all(dn.nodes.map((n) => waitHealthy(n.url, 30_000)));
  const bad = dn.nodes.filter((_, i) => !ok[i]);
  if (bad.length > 0) {
    const n = bad[0]!;
    const log = join(dir, n.dataDir, "logs", "process.out");
    const tail = existsSync(log) ? readFileSync(log, "utf8").split("\n").slice(-5).join("\n") : "";
    await devnetDown(dir);
    throw new DevnetError(
      { code: DevnetErrorCode.StartFailed, node: n.id },
      `Cannot start devnet: ${bad.map((b) => b.id).join(", ")} did not answer within 30 s; see ${log}:\n${tail}`,
    );
  }
  if (o.loadTps && o.loadTps > 0) {
    const out = openSync(join(dir, "load.out"), "a");
    const [cmd, ...args] = cliCommand();
    const extra = o.payloadBytes ? ["--payload-bytes", String(o.payloadBytes)] : [];
    const child = spawn(
      cmd!,
      [...args, "devnet", "load", resolve(dir), "--tps", String(o.loadTps), ...extra],
      { detached: true, stdio: ["ignore", out, out], env: nodeEnv() },
    );
    child.unref();
    run.load = child.pid!;
    writeFileAtomic(runPath, `${JSON.stringify(run)}\n`);
  }
  return run;
}

async function terminate(pid: number, timeoutMs: number): Promise<void> {
  if (!isAlive(pid)) return;
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (isAlive(pid)) process.kill(pid, "SIGKILL");
}

/** Stops the load generator, then every node (SIGTERM, SIGKILL after 10 s). */
export async function devnetDown(dir: string): Promise<void> {
  const runPath = join(dir, "run.json");
  if (!existsSync(runPath)) return;
  const run = JSON.parse(readFileSync(runPath, "utf8")) as RunFile;
  if (run.load) await terminate(run.load, 5000);
  await Promise.all(run.nodes.map((n) => terminate(n.pid, 10_000)));
  rmSync(runPath, { force: true });
}

export interface DevnetNodeStatus {
  id: string;
  url: string;
  up: boolean;
  status?: NodeStatus;
}

export async function devnetStatus(dir: string): Promise<DevnetNodeStatus[]> {
  const dn = readDevnet(dir);
  return Promise.all(
    dn.nodes.map(async (n) => {
      try {
        return { id: n.id, url: n.url, up: true, status: await new NodeClient(n.url).status(2000) };
      } catch {
        return { id: n.id, url: n.url, up: false };
      }
    }),
  );
}

/** The admin token of a devnet node, for tools that run beside it. */
export function adminTokenOf(dir: string, n: DevnetNode): string {
  return readFileSync(join(dir, n.dataDir, "admin.token"), "utf8").trim();
}
