// Goal: prove a node client fetches block ranges whole, sends its calls' bodies whole, and turns every way a peer can fail it into a coded error; method: serve real HTTP answers on loopback (frames, a 500, an oversized or truncated body, silence, a 401), a closed port and unusable addresses, and check what the client sends, returns or throws.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { NodeClient, NodeClientError, NodeClientErrorCode } from "../../src/chain/client.js";
import { generateKeyPair } from "../../src/chain/crypto.js";
import { encodeTx, signTransfer } from "../../src/chain/tx.js";

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Blocks as a range answer frames them: u32 length, then the block. */
function frames(blocks: Buffer[]): Buffer {
  return Buffer.concat(
    blocks.flatMap((b) => {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(b.length);
      return [len, b];
    }),
  );
}

async function refused(p: Promise<unknown>, code: NodeClientErrorCode, text: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof NodeClientError, `a NodeClientError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, text);
    return true;
  });
}

test("a block range arrives whole, split into its blocks, with the path and the binary accept header sent", async () => {
  const blocks = [Buffer.from("first block"), Buffer.alloc(300_000, 7), Buffer.from("third")];
  const body = frames(blocks);
  let seen = { url: "", accept: "" };
  const { server, url } = await serve((req, res) => {
    seen = { url: req.url ?? "", accept: req.headers.accept ?? "" };
    res.setHeader("content-type", "application/octet-stream");
    // Written in pieces, as a large answer arrives.
    res.write(body.subarray(0, 100_000));
    setTimeout(() => res.end(body.subarray(100_000)), 20);
  });
  try {
    const got = await new NodeClient(url).blockBytes(5, 7);
    assert.deepEqual(got, blocks);
    assert.deepEqual(seen, { url: "/blocks?from=5&to=7", accept: "application/octet-stream" });
  } finally {
    server.close();
  }
});

test("a peer's error answer, an oversized body, a body cut short and silence each give their coded error", async () => {
  const { server, url } = await serve((req, res) => {
    const from = new URL(req.url ?? "/", "http://x").searchParams.get("from");
    if (from === "1") {
      res.statusCode = 500;
      res.end("ledger is busy");
    } else if (from === "2") {
      res.setHeader("content-length", String(65 * 1024 * 1024));
      res.write(Buffer.alloc(1024));
    } else if (from === "3") {
      res.setHeader("content-length", "100000");
      res.write(Buffer.alloc(1000), () => res.destroy());
    }
    // from=4: no answer at all.
  });
  const c = new NodeClient(url);
  try {
    await refused(c.blockBytes(1, 2), NodeClientErrorCode.Http, /answered 500: ledger is busy/);
    await refused(c.blockBytes(2, 3), NodeClientErrorCode.TooLarge, /sent 68157440 bytes, over the limit/);
    await refused(c.blockBytes(3, 4), NodeClientErrorCode.Unreachable, /closed mid-body/);
    await refused(
      c.blockBytes(4, 5, 300),
      NodeClientErrorCode.Unreachable,
      /TimeoutError; check that the node is running/,
    );
  } finally {
    server.closeAllConnections();
    server.close();
  }
  // A port nobody listens on any more.
  await refused(c.blockBytes(1, 2), NodeClientErrorCode.Unreachable, /ECONNREFUSED/);
});

test("a body that frames a block longer than the bytes sent is refused as truncated", async () => {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(100, 0);
  const { server, url } = await serve((_req, res) => res.end(body));
  try {
    await refused(new NodeClient(url).blockBytes(1, 1), NodeClientErrorCode.Http, /truncated block/);
  } finally {
    server.close();
  }
});

test("an address that is not http or https gives a coded error, and nothing fires later", async () => {
  // `localhost:1` parses as a URL whose scheme is `localhost:`; node:http throws on it at once.
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): void => {
    uncaught.push(err);
  };
  process.on("uncaughtException", onUncaught);
  try {
    for (const address of ["localhost:1", "ftp://127.0.0.1:1"]) {
      const c = new NodeClient(address, { timeoutMs: 100 });
      await refused(c.status(100), NodeClientErrorCode.Unreachable, /ERR_INVALID_PROTOCOL/);
      await refused(c.blockBytes(1, 2, 100), NodeClientErrorCode.Unreachable, /ERR_INVALID_PROTOCOL/);
    }
    // Past the requests' deadlines: a timer left behind would throw now.
    await new Promise((r) => setTimeout(r, 250));
    assert.deepEqual(uncaught, []);
  } finally {
    process.off("uncaughtException", onUncaught);
  }
});

test("calls that send go out with their method, length and body, and their answers are read", async () => {
  const seen: { method: string; url: string; length: string; type: string; auth: string; body: Buffer }[] =
    [];
  const { server, url } = await serve((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (d: Buffer) => parts.push(d));
    req.on("end", () => {
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        length: req.headers["content-length"] ?? "",
        type: req.headers["content-type"] ?? "",
        auth: req.headers.authorization ?? "",
        body: Buffer.concat(parts),
      });
      if (req.url === "/admin/pause") {
        res.statusCode = 401;
        res.end("admin token required");
      } else res.end(JSON.stringify({ accepted: true, id: "ab" }));
    });
  });
  try {
    const c = new NodeClient(url, { adminToken: "secret-token" });
    const tx = signTransfer(
      Buffer.alloc(32, 1),
      generateKeyPair(),
      generateKeyPair().publicKey,
      5n,
      0n,
      Buffer.alloc(40, 9),
    );
    assert.deepEqual(await c.submitTx(tx), { accepted: true, id: "ab" });
    await c.setPeers(["http://127.0.0.1:1"]);
    await c.releaseCheckpoint("cp 1");
    await refused(c.setProducing(false), NodeClientErrorCode.Http, /answered 401: admin token required/);
    const [submit, peers, release, pause] = seen;
    assert.deepEqual(
      [submit!.method, submit!.url, submit!.type, submit!.length],
      ["POST", "/tx", "application/octet-stream", String(encodeTx(tx).length)],
    );
    assert.deepEqual(submit!.body, encodeTx(tx));
    assert.deepEqual(
      [peers!.method, peers!.type, peers!.auth],
      ["POST", "application/json", "Bearer secret-token"],
    );
    assert.deepEqual(JSON.parse(peers!.body.toString()), { peers: ["http://127.0.0.1:1"] });
    assert.deepEqual(
      [release!.method, release!.url, release!.length],
      ["DELETE", "/admin/checkpoint/cp%201", "0"],
    );
    assert.deepEqual([pause!.method, pause!.length, pause!.body.length], ["POST", "0", 0]);
  } finally {
    server.close();
  }
});
