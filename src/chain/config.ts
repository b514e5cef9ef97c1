/**
 * A node's data directory and its `node.json`. Layout (see docs/storage.md):
 *
 *   node.json  genesis.json  admin.token  LOCK
 *   keys/validator.pem  keys/watermark.json
 *   ledger/  state/  checkpoints/  logs/
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CodedError } from "../util/errors.js";
import * as z from "../util/zod.js";
import { SEGMENT_BYTES_DEFAULT } from "./storage/chain-store.js";

export const NodeConfigSchema = z.object({
  nodeId: z.string().check(z.minLength(1), z.maxLength(64), z.regex(/^[A-Za-z0-9._-]+$/)),
  host: z._default(z.string(), "127.0.0.1"),
  port: z.int().check(z.minimum(0), z.maximum(65535)),
  peers: z._default(z.array(z.url()).check(z.maxLength(64)), []),
  /** Path (relative to the data directory) of the validator key; absent for a non-validating node. */
  validatorKey: z.optional(z.string()),
  segmentBytes: z._default(z.int().check(z.minimum(4096)), SEGMENT_BYTES_DEFAULT),
  /** Blocks of undo history kept; 0 keeps all. */
  undoDepth: z._default(z.int().check(z.minimum(0)), 0),
  /** How often peers' status is polled. */
  peerPollMs: z._default(z.int().check(z.minimum(50), z.maximum(60_000)), 500),
  logLevel: z._default(z.enum(["trace", "debug", "info", "warn", "error", "silent"]), "info"),
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
