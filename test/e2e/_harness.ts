/**
 * Helpers for end-to-end tests: devnets of real node processes on loopback, started and
 * killed the way an operator (or a crash) would, and waits on observable events.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeClient, type NodeStatus } from "../../src/chain/client.js";
import {
  cliCommand,
  type DevnetFile,
  type DevnetInitOptions,
  type DevnetNode,
  devnetInit,
  spawnNode,
  waitHealthy,
} from "../../src/chain/devnet.js";
import { Genesis } from "../../src/chain/genesis.js";
import { validateNodeData } from "../../src/ledger/validate.js";
import { isAlive } from "../../src/util/process.js";

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `cv-${prefix}-`));
}

/** Polls `fn` every `everyMs` until it returns a truthy value, or fails after `timeoutMs` with `what`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    await sleep(everyMs);
  }
  throw new Error(
    `Timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ""}`,
  );
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export { isAlive };

/** A devnet whose node processes the test starts, kills and restarts itself. */
export class TestNet {
  readonly pids = new Map<string, number>();
  readonly genesis: Genesis;
  private loadPid: number | undefined;

  constructor(
    readonly dir: string,
    readonly dn: DevnetFile,
  ) {
    this.genesis = Genesis.load(join(dir, "genesis.json"));
  }

  static async create(prefix: string, o: DevnetInitOptions): Promise<TestNet> {
    const dir = tempDir(prefix);
    const dn = await devnetInit(dir, o);
    return new TestNet(dir, dn);
  }

  node(i: number): DevnetNode {
    return this.dn.nodes[i]!;
  }

  dataDir(i: number): string {
    return join(this.dir, this.node(i).dataDir);
  }

  client(i: number): NodeClient {
    const token = readFileSync(join(this.dataDir(i), "admin.token"), "utf8").trim();
    return new NodeClient(this.node(i).url, { adminToken: token, timeoutMs: 3000 });
  }

  /** Rewrites a node's peer list in node.json (takes effect at its next start). */
  setConfiguredPeers(i: number, peers: string[]): void {
    const p = join(this.dataDir(i), "node.json");
    const cfg = JSON.parse(readFileSync(p, "utf8")) as Record<string, unknown>;
    cfg.peers = peers;
    writeFileSync(p, JSON.stringify(cfg, null, 2));
  }

  async start(i: number): Promise<void> {
    const pid = spawnNode(this.dir, this.node(i));
    this.pids.set(this.node(i).id, pid);
    if (!(await waitHealthy(this.node(i).url, 20_000))) {
      const log = readFileSync(join(this.dataDir(i), "logs", "process.out"), "utf8").slice(-2000);
      throw new Error(`${this.node(i).id} did not become healthy; process output:\n${log}`);
    }
  }

  async startAll(indexes = this.dn.nodes.map((_, i) => i)): Promise<void> {
    await Promise.all(indexes.map((i) => this.start(i)));
  }

  /** SIGKILL: the crash a test wants, at whatever instant the node is in. */
  async kill(i: number, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const pid = this.pids.get(this.node(i).id);
    if (!pid) return;
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
    await waitFor(`${this.node(i).id} (pid ${pid}) to exit`, () => !isAlive(pid), 15_000, 20);
    this.pids.delete(this.node(i).id);
  }

  async status(i: number): Promise<NodeStatus> {
    return this.client(i).status();
  }

  /** Starts the CLI's load generator as its own process. */
  startLoad(tps: number, payloadBytes = 0): void {
    const [cmd, ...args] = cliCommand();
    const child = spawn(
      cmd!,
      [...args, "devnet", "load", this.dir, "--tps", String(tps), "--payload-bytes", String(payloadBytes)],
      { stdio: "ignore" },
    );
    this.loadPid = child.pid;
  }

  async stopLoad(): Promise<void> {
    if (this.loadPid && isAlive(this.loadPid)) {
      process.kill(this.loadPid, "SIGTERM");
      const pid = this.loadPid;
      await waitFor("load generator to exit", () => !isAlive(pid), 10_000, 20);
    }
    this.loadPid = undefined;
  }

  /**
   * Stops the load, pauses every running node's production and waits until they all
   * report the same head; returns their statuses.
   */
  async settle(timeoutMs = 20_000): Promise<NodeStatus[]> {
    await this.stopLoad();
    const idx = this.dn.nodes.map((_, i) => i).filter((i) => this.pids.has(this.node(i).id));
    await Promise.all(idx.map((i) => this.client(i).setProducing(false)));
    return waitFor(
      "all nodes to agree on one head",
      async () => {
        const st = await Promise.all(idx.map((i) => this.status(i)));
        return new Set(st.map((s) => s.headHash)).size === 1 ? st : false;
      },
      timeoutMs,
    );
  }

  /** Validates a node's whole data directory offline (the node must be stopped or paused). */
  async validate(i: number) {
    return validateNodeData(this.dataDir(i), this.genesis);
  }

  async destroy(): Promise<void> {
    await this.stopLoad();
    for (const pid of this.pids.values()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    for (const pid of this.pids.values())
      await waitFor("node exit", () => !isAlive(pid), 10_000, 20).catch(() => undefined);
    this.pids.clear();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
