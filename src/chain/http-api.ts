/**
 * The node's HTTP API (fastify). Public: status, health, metrics, blocks, hashes, accounts,
 * transactions and peer announcements. Admin (bearer token): checkpoint, pause, resume.
 */
import { timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { decodeBlock } from "./block.js";
import { hex } from "./crypto.js";
import { DecodeError } from "./encoding.js";
import type { ChainNode } from "./node.js";
import { decodeTx, txHash } from "./tx.js";
import { BLOCK_BYTES_MAX, type Block } from "./types.js";
import { BlockError } from "./validate.js";

// 256 blocks or 16 MiB per range response, whichever comes first: bounds server memory per request.
const RANGE_BLOCKS_MAX = 256;
const RANGE_BYTES_MAX = 16 * 1024 * 1024;
// 1024 hashes per request: enough for a fork search window, small enough to answer in a millisecond.
const HASHES_MAX = 1024;

function blockJson(b: Block, hash: Buffer): Record<string, unknown> {
  const h = b.header;
  return {
    height: h.height,
    hash: hex(hash),
    prevHash: hex(h.prevHash),
    timestampMs: h.timestampMs,
    proposer: h.proposer,
    txRoot: hex(h.txRoot),
    stateRoot: hex(h.stateRoot),
    txCount: h.txCount,
    signature: hex(h.signature),
    txs: b.txs.map((t) => ({
      id: hex(txHash(t)),
      from: hex(t.from),
      to: hex(t.to),
      amount: t.amount.toString(),
      nonce: t.nonce.toString(),
      dataBytes: t.data.length,
    })),
  };
}

function intParam(v: unknown, name: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0)
    throw Object.assign(new Error(`Query parameter ${name} must be a non-negative integer`), {
      statusCode: 400,
    });
  return n;
}

export function buildNodeApi(node: ChainNode, adminToken: string): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: BLOCK_BYTES_MAX + 1024 });
  app.addContentTypeParser("application/octet-stream", { parseAs: "buffer" }, (_req, body, done) =>
    done(null, body),
  );
  const store = node.store;
  const tokenBuf = Buffer.from(adminToken);

  const requireAdmin = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (tokenBuf.length === 0) {
      await reply.code(503).send({
        error:
          "The admin API is disabled: this node has no admin.token; create one (32+ random bytes, hex) and restart the node",
      });
      return;
    }
    const h = req.headers.authorization ?? "";
    const given = Buffer.from(h.startsWith("Bearer ") ? h.slice(7) : "");
    if (given.length !== tokenBuf.length || !timingSafeEqual(given, tokenBuf)) {
      await reply.code(401).send({
        error: "Admin call needs the node's admin token: Authorization: Bearer <token from admin.token>",
      });
    }
  };

  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    const bad =
      err instanceof BlockError ||
      err instanceof DecodeError ||
      err instanceof TypeError ||
      err instanceof RangeError;
    // Fastify's own errors carry their status (413 for a body over the limit); ours map here.
    const status = err.statusCode ?? (bad ? 400 : 500);
    void reply.code(status).send({ error: err.message, code: (err as { code?: string }).code });
  });

  app.get("/status", async () => {
    const tip = store.tip();
    const v = node.opts.validator;
    return {
      chainId: node.genesis.doc.chainId,
      nodeId: node.opts.nodeId,
      genesisHash: hex(node.genesis.hash),
      height: tip.height,
      headHash: hex(tip.hash),
      stateRoot: hex(store.stateRoot),
      weight: tip.weight.toString(),
      syncing: node.isSyncing,
      lagBlocks: node.lagBlocks(),
      producing: node.isProducing,
      validator: v ? { index: v.index, name: v.name } : null,
      mempoolTxs: node.mempool.size,
      peers: node.peerView(),
    };
  });

  // 503 while the disk is full: the node serves its chain but cannot add to it.
  app.get("/health", async (_req, reply) => {
    const full = node.diskFull;
    if (!full) return { status: "ok", height: store.tip().height };
    return reply.code(503).send({
      status: "disk-full",
      height: store.tip().height,
      since: new Date(full.sinceMs).toISOString(),
      error: full.error,
    });
  });

  app.get("/metrics", async (_req, reply) => {
    const m = node.metricsRegistry;
    return reply.type(m.contentType).send(await m.metrics());
  });

  app.get<{ Params: { height: string } }>("/blocks/:height", async (req, reply) => {
    const height = intParam(req.params.height, "height");
    if (height < 1 || height > store.tip().height)
      return reply
        .code(404)
        .send({ error: `No block at height ${height}; the chain ends at ${store.tip().height}` });
    const bytes = store.ledger.readBlockBytes(height);
    if (req.headers.accept === "application/octet-stream")
      return reply.type("application/octet-stream").send(bytes);
    const b = decodeBlock(bytes);
    return blockJson(b, store.hashAt(height)!);
  });

  app.get<{ Querystring: { from?: string; to?: string } }>("/blocks", async (req, reply) => {
    const from = intParam(req.query.from ?? "1", "from");
    const to = Math.min(
      intParam(req.query.to ?? String(from), "to"),
      store.tip().height,
      from + RANGE_BLOCKS_MAX - 1,
    );
    const frames = store.ledger.readBlockFrames(Math.max(1, from), to, RANGE_BYTES_MAX);
    if (req.headers.accept === "application/octet-stream")
      return reply.type("application/octet-stream").send(frames);
    const out: Record<string, unknown>[] = [];
    for (let off = 0; off < frames.length; ) {
      const n = frames.readUInt32BE(off);
      const b = decodeBlock(frames.subarray(off + 4, off + 4 + n));
      out.push(blockJson(b, store.hashAt(b.header.height)!));
      off += 4 + n;
    }
    return out;
  });

  app.get<{ Querystring: { from?: string; to?: string } }>("/hashes", async (req) => {
    const from = intParam(req.query.from ?? "0", "from");
    const to = Math.min(
      intParam(req.query.to ?? String(from), "to"),
      store.tip().height,
      from + HASHES_MAX - 1,
    );
    const out: string[] = [];
    for (let h = from; h <= to; h++) out.push(hex(store.hashAt(h)!));
    return out;
  });

  app.get<{ Params: { pubkey: string } }>("/accounts/:pubkey", async (req, reply) => {
    if (!/^[0-9a-f]{64}$/.test(req.params.pubkey))
      return reply.code(400).send({ error: "Account must be 64 lowercase hex characters" });
    const a = store.state.getAccount(Buffer.from(req.params.pubkey, "hex"));
    return { balance: (a?.balance ?? 0n).toString(), nonce: (a?.nonce ?? 0n).toString() };
  });

  app.post("/tx", async (req, reply) => {
    if (!Buffer.isBuffer(req.body))
      return reply.code(415).send({ error: "Send the encoded transaction as application/octet-stream" });
    const tx = decodeTx(req.body);
    const r = node.submitTx(tx, req.headers["x-chainvault-gossip"] !== "1");
    return reply
      .code(r.accepted ? 200 : 422)
      .send({ accepted: r.accepted, id: hex(txHash(tx)), reason: r.reason });
  });

  app.post("/p2p/block", async (req, reply) => {
    if (!Buffer.isBuffer(req.body))
      return reply.code(415).send({ error: "Send the encoded block as application/octet-stream" });
    const block = decodeBlock(req.body);
    const peer = req.headers["x-chainvault-peer"];
    const result = await node.onAnnounce(
      { block, bytes: req.body },
      typeof peer === "string" ? peer : undefined,
    );
    return { result, height: block.header.height };
  });

  app.post("/admin/checkpoint", { preHandler: requireAdmin }, async () => store.checkpoint());
  app.delete<{ Params: { id: string } }>(
    "/admin/checkpoint/:id",
    { preHandler: requireAdmin },
    async (req, reply) => {
      const ok = store.releaseCheckpoint(req.params.id);
      return reply.code(ok ? 200 : 404).send({ released: ok });
    },
  );
  app.post<{ Body: { peers?: unknown } }>(
    "/admin/peers",
    { preHandler: requireAdmin },
    async (req, reply) => {
      const peers = req.body?.peers;
      if (
        !Array.isArray(peers) ||
        peers.length > 64 ||
        !peers.every((p) => typeof p === "string" && /^https?:\/\/[^\s]+$/.test(p))
      ) {
        return reply
          .code(400)
          .send({ error: 'Body must be {"peers": ["http://host:port", ...]} with at most 64 URLs' });
      }
      node.setPeers(peers as string[]);
      return { peers: node.peerView().map((p) => p.url) };
    },
  );
  app.post("/admin/pause", { preHandler: requireAdmin }, async () => {
    node.setPaused(true);
    return { producing: false };
  });
  app.post("/admin/resume", { preHandler: requireAdmin }, async () => {
    node.setPaused(false);
    return { producing: node.isProducing };
  });

  return app;
}
