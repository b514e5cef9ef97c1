/**
 * HTTP client for a node's API, used by peers, the devnet tools and the recovery adapters.
 * Every call has a timeout and a bound on the bytes it will accept.
 */
import { CodedError } from "../util/errors.js";
import { decodeBlock } from "./block.js";
import { HttpCallError, type HttpCallRequest, httpCall } from "./http-call.js";
import { encodeTx } from "./tx.js";
import type { Block, Transaction } from "./types.js";

export enum NodeClientErrorCode {
  Unreachable = "NODE_UNREACHABLE",
  Http = "NODE_HTTP_ERROR",
  TooLarge = "NODE_RESPONSE_TOO_LARGE",
}

export class NodeClientError extends CodedError<NodeClientErrorCode> {}

/** What `GET /status` returns. */
export interface NodeStatus {
  chainId: string;
  nodeId: string;
  genesisHash: string;
  height: number;
  headHash: string;
  stateRoot: string;
  weight: string;
  syncing: boolean;
  lagBlocks: number;
  producing: boolean;
  validator: { index: number; name: string } | null;
  mempoolTxs: number;
  peers: { url: string; reachable: boolean; height: number | null; headHash: string | null }[];
}

export interface AccountView {
  balance: string;
  nonce: string;
}

/** A block as fetched from a peer, with the bytes it arrived as. */
export interface FetchedBlock {
  block: Block;
  bytes: Buffer;
}

// 64 MiB: the largest range response we accept (the server caps ranges at 16 MiB).
const RESPONSE_BYTES_MAX = 64 * 1024 * 1024;

export interface NodeClientOptions {
  timeoutMs?: number;
  /** Admin token for admin calls; never logged. */
  adminToken?: string;
  /** This node's own URL, sent with announcements so the receiver can sync from it. */
  selfUrl?: string;
}

export class NodeClient {
  readonly url: string;

  constructor(
    url: string,
    private readonly opts: NodeClientOptions = {},
  ) {
    this.url = url.replace(/\/$/, "");
  }

  private unreachable(path: string, cause: string): NodeClientError {
    return new NodeClientError(
      { code: NodeClientErrorCode.Unreachable, url: this.url, path },
      `Cannot reach node ${this.url}${path}: ${cause}; check that the node is running and the address is right`,
    );
  }

  private httpError(path: string, status: number, text: string): NodeClientError {
    return new NodeClientError(
      { code: NodeClientErrorCode.Http, url: this.url, path, status },
      `Node ${this.url}${path} answered ${status}: ${text}`,
    );
  }

  private adminHeaders(): Record<string, string> {
    return this.opts.adminToken ? { authorization: `Bearer ${this.opts.adminToken}` } : {};
  }

  async status(timeoutMs?: number): Promise<NodeStatus> {
    return (await this.json("/status", timeoutMs)) as NodeStatus;
  }

  async health(timeoutMs?: number): Promise<{ status: string; height: number }> {
    return (await this.json("/health", timeoutMs)) as { status: string; height: number };
  }

  async account(pubkeyHex: string): Promise<AccountView> {
    return (await this.json(`/accounts/${pubkeyHex}`)) as AccountView;
  }

  /** Block hashes for heights from..to inclusive (the server bounds the count). */
  async hashes(from: number, to: number): Promise<string[]> {
    return (await this.json(`/hashes?from=${from}&to=${to}`)) as string[];
  }

  /** Raw blocks from..to inclusive; the server may return fewer (bounded by count and bytes). */
  async blocks(from: number, to: number): Promise<FetchedBlock[]> {
    return (await this.blockBytes(from, to)).map((bytes) => ({ block: decodeBlock(bytes), bytes }));
  }

  /**
   * Blocks from..to as the bytes the peer sent, not yet decoded: a syncing node keeps
   * batches ahead of its import this way, as a few large buffers rather than many objects.
   */
  async blockBytes(from: number, to: number, timeoutMs = 30_000): Promise<Buffer[]> {
    const path = `/blocks?from=${from}&to=${to}`;
    const buf = await this.get(path, "application/octet-stream", timeoutMs);
    const out: Buffer[] = [];
    for (let off = 0; off < buf.length; ) {
      if (off + 4 > buf.length)
        throw new NodeClientError(
          { code: NodeClientErrorCode.Http, url: this.url, path },
          `Node ${this.url} sent a truncated block frame`,
        );
      const n = buf.readUInt32BE(off);
      const bytes = buf.subarray(off + 4, off + 4 + n);
      if (bytes.length !== n)
        throw new NodeClientError(
          { code: NodeClientErrorCode.Http, url: this.url, path },
          `Node ${this.url} sent a truncated block`,
        );
      out.push(bytes);
      off += 4 + n;
    }
    return out;
  }

  /**
   * One call in one buffer, over node:http rather than fetch (see http-call.ts): a syncing
   * node's polls and range requests never load fetch's machinery (~0.1 s of CPU at start,
   * which its first verification waited for), and a process under a small `ulimit -v`,
   * where fetch cannot run, still reaches its peers. Failures are NodeClientErrors.
   */
  private async call(path: string, req: HttpCallRequest, timeoutMs: number): Promise<Buffer> {
    try {
      return await httpCall(new URL(`${this.url}${path}`), req, timeoutMs, RESPONSE_BYTES_MAX);
    } catch (err) {
      if (!(err instanceof HttpCallError)) throw err;
      const f = err.failure;
      if (f.kind === "unreachable") throw this.unreachable(path, f.cause);
      if (f.kind === "status") throw this.httpError(path, f.status, f.text);
      throw new NodeClientError(
        { code: NodeClientErrorCode.TooLarge, url: this.url, path },
        `Node ${this.url}${path} sent ${f.bytes} bytes, over the limit`,
      );
    }
  }

  /** The timeout of a call that names none. */
  private get defaultTimeoutMs(): number {
    return this.opts.timeoutMs ?? 5000;
  }

  private get(path: string, accept: string, timeoutMs = this.defaultTimeoutMs): Promise<Buffer> {
    return this.call(path, { headers: { accept } }, timeoutMs);
  }

  /** A POST (or `method`) with `body`, empty unless given; its answer's bytes. */
  private send(
    path: string,
    o: { method?: string; headers?: Record<string, string>; body?: Buffer | string; timeoutMs?: number } = {},
  ): Promise<Buffer> {
    return this.call(
      path,
      { method: o.method ?? "POST", headers: o.headers ?? {}, body: o.body ?? "" },
      o.timeoutMs ?? this.defaultTimeoutMs,
    );
  }

  /** A GET's JSON answer. */
  private async json(path: string, timeoutMs?: number): Promise<unknown> {
    return parseJson(await this.get(path, "application/json", timeoutMs));
  }

  /** One block as JSON, for people and tools. */
  async blockJson(height: number): Promise<Record<string, unknown>> {
    return (await this.json(`/blocks/${height}`)) as Record<string, unknown>;
  }

  async submitTx(tx: Transaction): Promise<{ accepted: boolean; id: string }> {
    const answer = await this.send("/tx", {
      headers: { "content-type": "application/octet-stream" },
      body: encodeTx(tx),
    });
    return parseJson(answer) as { accepted: boolean; id: string };
  }

  /** Sends a new block to a peer. */
  async announce(bytes: Buffer, timeoutMs = 2000): Promise<void> {
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };
    if (this.opts.selfUrl) headers["x-chainvault-peer"] = this.opts.selfUrl;
    await this.send("/p2p/block", { headers, body: bytes, timeoutMs });
  }

  async forwardTx(tx: Transaction): Promise<void> {
    await this.send("/tx", {
      headers: { "content-type": "application/octet-stream", "x-chainvault-gossip": "1" },
      body: encodeTx(tx),
      timeoutMs: 2000,
    });
  }

  async checkpoint(): Promise<import("./storage/chain-store.js").Checkpoint> {
    const answer = await this.send("/admin/checkpoint", { headers: this.adminHeaders(), timeoutMs: 120_000 });
    return parseJson(answer) as import("./storage/chain-store.js").Checkpoint;
  }

  async releaseCheckpoint(id: string): Promise<void> {
    await this.send(`/admin/checkpoint/${encodeURIComponent(id)}`, {
      method: "DELETE",
      headers: this.adminHeaders(),
    });
  }

  /** Pauses or resumes block production on a validator. */
  async setProducing(on: boolean): Promise<void> {
    await this.send(on ? "/admin/resume" : "/admin/pause", { headers: this.adminHeaders() });
  }

  /** Replaces the node's peer list at run time. */
  async setPeers(peers: string[]): Promise<void> {
    await this.send("/admin/peers", {
      headers: { ...this.adminHeaders(), "content-type": "application/json" },
      body: JSON.stringify({ peers }),
    });
  }

  async metrics(): Promise<string> {
    return (await this.get("/metrics", "text/plain")).toString("utf8");
  }
}

function parseJson(answer: Buffer): unknown {
  return JSON.parse(answer.toString("utf8"));
}
