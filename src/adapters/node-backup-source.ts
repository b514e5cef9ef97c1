/**
 * How a backup reaches a node of the reference chain: which of its files form which
 * component, and a consistent view to read them from. A running node is read through its
 * admin checkpoint (a read-only copy at one height, made while it keeps producing blocks);
 * a stopped node's directory is read as it is. Either way the anchor (height, head hash,
 * state root) is the node's own word on what the copy holds.
 */
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { NodeClient } from "../chain/client.js";
import { loadNodeConfig, nodePaths } from "../chain/config.js";
import { hex } from "../chain/crypto.js";
import { Genesis } from "../chain/genesis.js";
import { StateStore } from "../chain/storage/state-store.js";
import { CodedError } from "../util/errors.js";
import { isAlive } from "../util/process.js";

/** The components of a node's data directory, in backup order. */
export const NODE_COMPONENTS = ["ledger", "state", "config", "keys", "logs"] as const;
export type NodeComponentName = (typeof NODE_COMPONENTS)[number];

export enum NodeSourceErrorCode {
  Unreachable = "NODE_SOURCE_UNREACHABLE",
  Invalid = "NODE_SOURCE_INVALID",
}

export class NodeSourceError extends CodedError<NodeSourceErrorCode> {}

/** What to back up, in the repository's terms; plain data so the vault stays chain-agnostic. */
export interface NodeBackupSource {
  sourceId: string;
  location: string;
  components: {
    name: NodeComponentName;
    dataClass: NodeComponentName;
    rootDir: string;
    include: string[];
    appendOnly?: (path: string) => boolean;
  }[];
  anchor: { height: number; headHash: string; stateRoot: string };
  /** Whether the copy came from a live checkpoint. */
  live: boolean;
  /** Releases the checkpoint, if one was taken. */
  release(): Promise<void>;
}

// Ledger segments and the height index only grow (a reorganisation rewrites the last few
// blocks, which the vault's check of the last reused chunk catches); so do logs.
const appendOnly = (path: string): boolean =>
  /^ledger\/(seg-[^/]+|heights\.idx)$/.test(path) || path.startsWith("logs/");

/**
 * Prepares a backup of the node at `ref`: a data directory, or a node's URL (`http://…`)
 * with its admin token in `adminToken`.
 */
export async function nodeBackupSource(
  ref: string,
  o: {
    components?: readonly string[];
    adminToken?: string;
    /** Awaited before a running node is asked for anything (the repository being opened). */
    beforeCheckpoint?: Promise<unknown>;
  } = {},
): Promise<NodeBackupSource> {
  const wanted = new Set(o.components && o.components.length > 0 ? o.components : NODE_COMPONENTS);
  for (const c of wanted)
    if (!(NODE_COMPONENTS as readonly string[]).includes(c))
      throw new NodeSourceError(
        { code: NodeSourceErrorCode.Invalid, component: c },
        `Unknown component ${c}: a node has ${NODE_COMPONENTS.join(", ")}`,
      );
  if (/^https?:\/\//.test(ref)) return live(ref, undefined, wanted, o.adminToken, o.beforeCheckpoint);
  if (!existsSync(join(ref, "node.json")))
    throw new NodeSourceError(
      { code: NodeSourceErrorCode.Invalid, path: ref },
      `Cannot back up ${ref}: it is not a node data directory (no node.json); give the directory made by devnet init, or the node's URL`,
    );
  const cfg = loadNodeConfig(ref);
  const lockPath = nodePaths(ref).lock;
  const pid = existsSync(lockPath) ? Number(readFileSync(lockPath, "utf8").trim() || "0") : 0;
  if (Number.isSafeInteger(pid) && pid > 0 && isAlive(pid)) {
    const token = o.adminToken ?? readFileSync(nodePaths(ref).adminToken, "utf8").trim();
    return live(
      `http://${cfg.host.includes(":") ? `[${cfg.host}]` : cfg.host}:${cfg.port}`,
      ref,
      wanted,
      token,
      o.beforeCheckpoint,
    );
  }
  return {
    sourceId: cfg.nodeId,
    location: ref,
    components: componentsOf(ref, ref, wanted),
    anchor: offlineAnchor(ref),
    live: false,
    release: async () => {},
  };
}

function componentsOf(dataDir: string, copyDir: string, wanted: Set<string>): NodeBackupSource["components"] {
  const all: NodeBackupSource["components"] = [
    { name: "ledger", dataClass: "ledger", rootDir: copyDir, include: ["ledger"], appendOnly },
    { name: "state", dataClass: "state", rootDir: copyDir, include: ["state"] },
    { name: "config", dataClass: "config", rootDir: dataDir, include: ["node.json", "genesis.json"] },
    { name: "keys", dataClass: "keys", rootDir: dataDir, include: ["keys", "admin.token"] },
    { name: "logs", dataClass: "logs", rootDir: dataDir, include: ["logs"], appendOnly },
  ];
  return all.filter((c) => wanted.has(c.name));
}

async function live(
  url: string,
  dataDirHint: string | undefined,
  wanted: Set<string>,
  token: string | undefined,
  before: Promise<unknown> | undefined,
): Promise<NodeBackupSource> {
  await before;
  const envToken = process.env.CHAINVAULT_ADMIN_TOKEN;
  const adminToken = token ?? envToken;
  if (!adminToken)
    throw new NodeSourceError(
      { code: NodeSourceErrorCode.Invalid, url },
      `Cannot back up the node at ${url}: its admin token is needed for a checkpoint; set CHAINVAULT_ADMIN_TOKEN or back up its data directory`,
    );
  const client = new NodeClient(url, { adminToken });
  let cp: Awaited<ReturnType<NodeClient["checkpoint"]>>;
  let nodeId: string;
  try {
    nodeId = (await client.status()).nodeId;
    cp = await client.checkpoint();
  } catch (err) {
    throw new NodeSourceError(
      { code: NodeSourceErrorCode.Unreachable, url },
      `Cannot back up the node at ${url}: ${(err as Error).message}`,
    );
  }
  // A checkpoint lives in <dataDir>/checkpoints/<id>: the node's own files are two levels up.
  const dataDir = dataDirHint ?? dirname(dirname(cp.dir));
  return {
    sourceId: nodeId,
    location: dataDirHint ?? url,
    components: componentsOf(dataDir, cp.dir, wanted),
    anchor: { height: cp.height, headHash: cp.headHash, stateRoot: cp.stateRoot },
    live: true,
    release: async () => {
      await client.releaseCheckpoint(cp.id).catch(() => undefined);
    },
  };
}

/** Height, head hash and state root of a stopped node, read from its state database. */
export function offlineAnchor(dataDir: string): NodeBackupSource["anchor"] {
  const genesis = Genesis.load(join(dataDir, "genesis.json"));
  const path = join(dataDir, "state", "state.db");
  if (!existsSync(path))
    return { height: 0, headHash: hex(genesis.hash), stateRoot: hex(genesis.initialLtHash.root()) };
  // Opening a WAL-mode database, even read-only, creates its -wal and -shm files. Those this
  // call made are removed again, so reading the anchor leaves a stopped node's directory as
  // it was, and the backup that follows does not store them.
  const made = [`${path}-wal`, `${path}-shm`].filter((p) => !existsSync(p));
  const s = new StateStore(path, genesis, { readonly: true });
  try {
    const head = s.head;
    return {
      height: head?.height ?? 0,
      headHash: hex(head?.hash ?? genesis.hash),
      stateRoot: hex(s.ltHash.root()),
    };
  } finally {
    s.close();
    // A read-only connection never writes to the WAL: one it created is empty.
    for (const p of made)
      if (p.endsWith("-shm") || statSync(p, { throwIfNoEntry: false })?.size === 0)
        rmSync(p, { force: true });
  }
}
