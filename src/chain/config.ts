/**
 * A node's data directory and its `node.json`. Layout (see docs/storage.md):
 *
 *   node.json  genesis.json  admin.token  LOCK
 *   keys/validator.pem  keys/watermark.json
 *   ledger/  state/  checkpoints/  logs/
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { CodedError } from "../util/errors.js";
import { SEGMENT_BYTES_DEFAULT } from "./storage/chain-store.js";

export const NodeConfigSchema = z.object({
  nodeId: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9._-]+$/),
  host: z.string().default("127.0.0.1"),
  port: z.number().int().min(0).max(65535),
  peers: z.array(z.url()).max(64).default([]),
  /** Path (relative to the data directory) of the validator key; absent for a non-validating node. */
  validatorKey: z.string().optional(),
  segmentBytes: z.number().int().min(4096).default(SEGMENT_BYTES_DEFAULT),
  /** Blocks of undo history kept; 0 keeps all. */
  undoDepth: z.number().int().min(0).default(0),
  /** How often peers' status is polled. */
  peerPollMs: z.number().int().min(50).max(60_000).default(500),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "silent"]).default("info"),
});

export type NodeConfig = z.infer<typeof NodeConfigSchema>;

export enum NodeConfigErrorCode {
  Invalid = "NODE_CONFIG_INVALID",
}

export class NodeConfigError extends CodedError<NodeConfigErrorCode> {}

export function nodePaths(dataDir: string) {
  return {
    config: join(dataDir, "node.json"),
    genesis: join(dataDir, "genesis.json"),
    adminToken: join(dataDir, "admin.token"),
    lock: join(dataDir, "LOCK"),
    watermark: join(dataDir, "keys", "watermark.json"),
    logs: join(dataDir, "logs"),
  };
}

export function loadNodeConfig(dataDir: string): NodeConfig {
  const path = nodePaths(dataDir).config;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === "ENOENT" ? "the file does not exist" : e.message;
    throw new NodeConfigError(
      { code: NodeConfigErrorCode.Invalid, path },
      `Cannot read node config ${path}: ${why}; is ${dataDir} a node data directory (made by devnet init)?`,
    );
  }
  const r = NodeConfigSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new NodeConfigError(
      { code: NodeConfigErrorCode.Invalid, path },
      `Invalid node config ${path}: ${i?.path.join(".") || "(root)"}: ${i?.message}`,
    );
  }
  return r.data;
}
