/**
 * A running devnet: each node its own detached process on loopback, recorded in
 * `<dir>/run.json`. Starts, checks and stops those processes (and the load generator);
 * library functions behind `chainvault devnet up/status/down`.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { writeFileAtomic } from "../util/fs-atomic.js";
import { isAlive } from "../util/process.js";
import { NodeClient, type NodeStatus } from "./client.js";
import { DevnetError, DevnetErrorCode, type DevnetNode, readDevnet } from "./devnet-file.js";

/** The command that runs the chainvault CLI in a child process, built or from source. */
export function cliCommand(): string[] {
  // CHAINVAULT_NODE_FLAGS passes flags to child Node processes, e.g. "--cpu-prof" for profiling.
  const flags = (process.env.CHAINVAULT_NODE_FLAGS ?? "").split(" ").filter(Boolean);
  // The bundle (what bin/chainvault runs) when it is built: a node process and each of its
  // check workers then load one file instead of ~100 modules (~0.2 s sooner, and ~0.1 s
  // per worker, which otherwise start while the node's first sync is verifying).
  for (const rel of ["../cli-bundle/main.js", "../cli/main.js"]) {
    const built = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(built)) return [process.execPath, ...flags, built];
  }
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
