/**
 * A devnet's description, `<dir>/devnet.json`: its nodes and load accounts, the errors the
 * devnet commands raise, and the reader that every devnet command starts from. Shared by
 * devnet init (devnet.ts) and the node processes' supervision (devnet-run.ts).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CodedError } from "../util/errors.js";

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
