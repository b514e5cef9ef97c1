/**
 * The composition root of a node process: reads the data directory, takes its lock, opens
 * storage, and starts the node and its HTTP API. `chainvault node start` calls this.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { CodedError, errorMessage, isNoSpace } from "../util/errors.js";
import { createLogger, type Logger } from "../util/logger.js";
import { isAlive } from "../util/process.js";
import { CheckPool } from "./check-pool.js";
import { loadNodeConfig, nodePaths } from "./config.js";
import { hex, importPrivateKeyPem } from "./crypto.js";
import { Genesis } from "./genesis.js";
import { buildNodeApi } from "./http-api.js";
import { createChainMetrics } from "./metrics.js";
import { ChainNode } from "./node.js";
import { ChainStore } from "./storage/chain-store.js";
import { Watermark } from "./watermark.js";

export enum NodeStartErrorCode {
  Locked = "NODE_LOCKED",
  NotValidator = "NODE_KEY_NOT_VALIDATOR",
  /** The data directory's disk is full. */
  NoSpace = "NODE_NO_SPACE",
}

export class NodeStartError extends CodedError<NodeStartErrorCode> {}

export interface RunningNode {
  node: ChainNode;
  url: string;
  logger: Logger;
  /** Stops production, the API and storage, and releases the lock. */
  stop(): Promise<void>;
}

/** Takes the data directory's lock; a lock left by a dead process is taken over. */
export function acquireLock(path: string): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      try {
        writeSync(fd, `${process.pid}\n`);
      } catch (err) {
        // An empty lock (a full disk) is removed, not left for the next start to puzzle over.
        closeSync(fd);
        unlinkSync(path);
        throw noSpace(err, path);
      }
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, "utf8").trim() === String(process.pid)) unlinkSync(path);
        } catch {
          // Already gone.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number(readFileSync(path, "utf8").trim());
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new NodeStartError(
          { code: NodeStartErrorCode.Locked, path, pid },
          `Cannot start node: process ${pid} holds the lock ${path}; stop that node first`,
        );
      }
      unlinkSync(path);
    }
  }
  throw new NodeStartError(
    { code: NodeStartErrorCode.Locked, path },
    `Cannot start node: could not take the lock ${path}`,
  );
}

export async function startNode(dataDir: string, opts: { logToStderr?: boolean } = {}): Promise<RunningNode> {
  const cfg = loadNodeConfig(dataDir);
  const paths = nodePaths(dataDir);
  mkdirSync(paths.logs, { recursive: true });
  const logger = createLogger({
    level: cfg.logLevel,
    base: { node: cfg.nodeId },
    ...(opts.logToStderr ? {} : { file: join(paths.logs, "node.log") }),
  });
  const release = acquireLock(paths.lock);
  let store: ChainStore | undefined;
  // A full disk while opening (the state database, the ledger's repair) is named as such.
  try {
    const genesis = Genesis.load(paths.genesis);
    CheckPool.for(genesis).warm();
    store = ChainStore.open(
      genesis,
      { dataDir, segmentBytes: cfg.segmentBytes, undoDepth: cfg.undoDepth },
      logger,
    );
    let validator: { key: ReturnType<typeof importPrivateKeyPem>; index: number; name: string } | undefined;
    let watermark: Watermark | undefined;
    if (cfg.validatorKey) {
      const key = importPrivateKeyPem(readFileSync(join(dataDir, cfg.validatorKey), "utf8"));
      const index = genesis.validatorKeys.findIndex((k) => k.equals(key.publicKey));
      if (index < 0) {
        throw new NodeStartError(
          { code: NodeStartErrorCode.NotValidator, key: hex(key.publicKey) },
          `Cannot start node: key ${cfg.validatorKey} (${hex(key.publicKey).slice(0, 16)}…) is not a validator of chain ${genesis.doc.chainId}`,
        );
      }
      validator = { key, index, name: genesis.doc.validators[index]!.name };
      watermark = new Watermark(paths.watermark);
    }
    const adminToken = existsSync(paths.adminToken) ? readFileSync(paths.adminToken, "utf8").trim() : "";
    const metrics = createChainMetrics();
    const selfUrl = `http://${cfg.host.includes(":") ? `[${cfg.host}]` : cfg.host}:${cfg.port}`;
    const node = new ChainNode(
      {
        nodeId: cfg.nodeId,
        selfUrl,
        peers: cfg.peers,
        peerPollMs: cfg.peerPollMs,
        ...(validator ? { validator } : {}),
      },
      { store, logger, metrics, ...(watermark ? { watermark } : {}) },
    );
    const app = buildNodeApi(node, adminToken);
    await app.listen({ host: cfg.host, port: cfg.port });
    node.start();
    const tip = store.tip();
    logger.info(
      { url: selfUrl, height: tip.height, head: hex(tip.hash), validator: validator?.name ?? null },
      "Node started",
    );
    const openStore = store;
    let stopping: Promise<void> | undefined;
    return {
      node,
      url: selfUrl,
      logger,
      stop: () => {
        stopping ??= (async () => {
          await node.stop();
          await app.close();
          await openStore.close();
          release();
          logger.info("Node stopped");
          logger.flush();
        })();
        return stopping;
      },
    };
  } catch (err) {
    if (store) await store.close();
    release();
    throw noSpace(err, dataDir);
  }
}

/** A full disk as a NodeStartError naming `where`; any other error as it is. */
function noSpace(err: unknown, where: string): unknown {
  if (!isNoSpace(err)) return err;
  return new NodeStartError(
    { code: NodeStartErrorCode.NoSpace, path: where },
    `Cannot start the node: the disk holding ${where} is full (${errorMessage(err)}); free space there and start it again`,
  );
}
