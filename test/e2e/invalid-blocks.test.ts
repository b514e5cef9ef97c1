/**
 * A node refuses invalid blocks and keeps running: blocks each breaking one rule (built
 * in the test with the devnet's real keys on top of a paused validator's head) are posted
 * to its /p2p/block endpoint or served by a fake peer during sync, and each must be refused
 * with the rule's code while the node's head, state root and health stay as they were.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { decodeBlock, encodeBlock, sealBlock, txRootOf } from "../../src/chain/block.js";
import type { NodeClient, NodeStatus } from "../../src/chain/client.js";
import { earliestTimestamp, inTurnProposer, proposerRank } from "../../src/chain/consensus.js";
import { generateKeyPair, importPrivateKeyPem, type KeyPair } from "../../src/chain/crypto.js";
import { signTransfer } from "../../src/chain/tx.js";
import { BLOCK_BYTES_MAX, type Transaction } from "../../src/chain/types.js";
import { TestNet, waitFor } from "./_harness.js";

// 2 validators of which only node-0 runs: its head stays fixed once paused, and the
// test holds both validator keys, so it can sign blocks in turn and out of turn.
const VALIDATORS = 2;
// 200 ms blocks: the next slot after a paused head opens quickly, so tests do not wait long.
const BLOCK_TIME_MS = 200;
const OUT_OF_TURN_DELAY_MS = 200;

let net: TestNet;
let client: NodeClient;
let url: string;
let validatorKeys: KeyPair[];
// Blocks that passed decoding and were refused by a validation rule, across this file's tests.
let refusedByRule = 0;

/** The head a candidate block builds on. */
interface Parent {
  height: number;
  hash: Buffer;
  timestampMs: number;
  stateRoot: Buffer;
}

interface BuildOptions {
  /** Signing key; the in-turn validator's by default. */
  key?: KeyPair;
  proposer?: number;
  prevHash?: Buffer;
  timestampMs?: number;
  stateRoot?: Buffer;
  txs?: Transaction[];
}

interface PostResult {
  status: number;
  body: { result?: string; height?: number; code?: string; error?: string };
}

before(async () => {
  net = await TestNet.create("invalid-blocks", {
    validators: VALIDATORS,
    blockTimeMs: BLOCK_TIME_MS,
    outOfTurnDelayMs: OUT_OF_TURN_DELAY_MS,
    peerPollMs: 100,
  });
  validatorKeys = [0, 1].map((i) =>
    importPrivateKeyPem(readFileSync(join(net.dataDir(i), "keys", "validator.pem"), "utf8")),
  );
  for (const [i, k] of validatorKeys.entries())
    assert.ok(k.publicKey.equals(net.genesis.validatorKeys[i]!), `validator ${i} key matches genesis`);
  await net.start(0);
  client = net.client(0);
  url = net.node(0).url;
  // A head above genesis, so that every candidate has a real parent block to build on.
  await waitFor("node-0 to produce two blocks", async () => (await client.status()).height >= 2, 20_000);
  await client.setProducing(false);
  // A block already in production when the pause arrived may still land: wait until the
  // head is the same in two polls in a row, so every test starts from a fixed head.
  let last: string | undefined;
  await waitFor(
    "node-0's head to stay put",
    async () => {
      const head = (await client.status()).headHash;
      const stable = head === last;
      last = head;
      return stable;
    },
    5000,
  );
});

after(async () => {
  await net?.destroy();
});

async function parentOf(s: NodeStatus): Promise<Parent> {
  const [b] = await client.blocks(s.height, s.height);
  assert.ok(b, `node-0 serves its head block ${s.height}`);
  return {
    height: s.height,
    hash: Buffer.from(s.headHash, "hex"),
    timestampMs: b.block.header.timestampMs,
    stateRoot: Buffer.from(s.stateRoot, "hex"),
  };
}

/** Builds the encoded block at parent.height + 1, valid unless an option breaks a rule. */
async function build(parent: Parent, o: BuildOptions = {}): Promise<Buffer> {
  const height = parent.height + 1;
  const proposer = o.proposer ?? inTurnProposer(height, VALIDATORS);
  const key = o.key ?? validatorKeys[proposer]!;
  const earliest = earliestTimestamp(
    { validatorCount: VALIDATORS, blockTimeMs: BLOCK_TIME_MS, outOfTurnDelayMs: OUT_OF_TURN_DELAY_MS },
    parent.timestampMs,
    proposerRank(height, proposer, VALIDATORS),
  );
  // A block's timestamp must not be ahead of the receiver's clock: wait for the slot to open.
  await waitFor(`the slot for height ${height} to open`, () => Date.now() >= earliest, 5000, 10);
  const txs = o.txs ?? [];
  const header = {
    height,
    prevHash: o.prevHash ?? parent.hash,
    timestampMs: o.timestampMs ?? Math.max(Date.now(), earliest),
    proposer,
    txRoot: txRootOf(txs),
    // An empty block leaves the state as it was, so its state root is the parent's.
    stateRoot: o.stateRoot ?? parent.stateRoot,
    txCount: txs.length,
  };
  return encodeBlock(sealBlock(net.genesis.hash, key.privateKey, header, txs));
}

async function post(body: Buffer): Promise<PostResult> {
  const res = await fetch(`${url}/p2p/block`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream" },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let parsed: PostResult["body"] = {};
  try {
    parsed = JSON.parse(text) as PostResult["body"];
  } catch {
    parsed = { error: text };
  }
  return { status: res.status, body: parsed };
}

/**
 * Sends only the headers of a POST declaring a body of `contentLength` bytes and returns
 * the status the node answers with before any of the body is sent. Sending the body as
 * well would race the server closing the connection after its early 413: the client's
 * write then fails with EPIPE and the response is lost (a fetch of the whole body failed
 * that way in about half of the attempts).
 */
function postHeadersOnly(contentLength: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/p2p/block`,
      {
        method: "POST",
        headers: { "content-type": "application/octet-stream", "content-length": String(contentLength) },
        timeout: 5000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      },
    );
    req.on("timeout", () => req.destroy(new Error("The node did not answer the headers within 5 s")));
    // After the answer, the error from destroying the request is expected and ignored.
    req.on("error", reject);
    req.flushHeaders();
  });
}

/** Sum of a counter's samples in Prometheus text, optionally only those with a given reason label. */
function counterValue(metrics: string, name: string, reason?: string): number {
  let sum = 0;
  for (const line of metrics.split("\n")) {
    const m = /^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (reason !== undefined && !(m[2] ?? "").split(",").includes(`reason="${reason}"`)) continue;
    sum += Number(m[3]);
  }
  return sum;
}

async function rejected(reason?: string): Promise<number> {
  return counterValue(await client.metrics(), "chainvault_chain_blocks_rejected_total", reason);
}

/** Asserts the node is healthy and its head and state are those of `before`. */
async function assertUnchanged(before: NodeStatus, what: string): Promise<void> {
  const now = await client.status();
  assert.equal(now.height, before.height, `${what}: height unchanged`);
  assert.equal(now.headHash, before.headHash, `${what}: head unchanged`);
  assert.equal(now.stateRoot, before.stateRoot, `${what}: state root unchanged`);
  assert.equal((await client.health()).status, "ok", `${what}: node still healthy`);
}

/** Posts a block that must be refused with `code`, and checks that the refusal is counted. */
async function assertRefused(bytes: Buffer, code: string, before: NodeStatus): Promise<void> {
  const counted = await rejected(code);
  const r = await post(bytes);
  assert.equal(r.status, 400, `${code}: answered ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(r.body.code, code, `refused for the expected rule: ${JSON.stringify(r.body)}`);
  assert.equal(
    await rejected(code),
    counted + 1,
    `${code}: counted in chainvault_chain_blocks_rejected_total`,
  );
  refusedByRule++;
  await assertUnchanged(before, code);
}

test("a block signed by a key other than its proposer's is refused with BLOCK_BAD_SIGNATURE", async () => {
  const s = await client.status();
  const parent = await parentOf(s);
  const proposer = inTurnProposer(s.height + 1, VALIDATORS);
  const otherValidator = validatorKeys[1 - proposer]!;
  await assertRefused(await build(parent, { key: otherValidator }), "BLOCK_BAD_SIGNATURE", s);
  await assertRefused(await build(parent, { key: generateKeyPair() }), "BLOCK_BAD_SIGNATURE", s);
});

test("a block whose header commits to a wrong state root is refused with BLOCK_BAD_STATE_ROOT", async () => {
  const s = await client.status();
  const parent = await parentOf(s);
  await assertRefused(await build(parent, { stateRoot: randomBytes(32) }), "BLOCK_BAD_STATE_ROOT", s);
});

test("a block at the next height whose parent hash is not the head is not imported", async () => {
  const s = await client.status();
  const parent = await parentOf(s);
  const r = await post(await build(parent, { prevHash: randomBytes(32) }));
  // onAnnounce treats a block that does not extend the head as a hint to sync, not as an import.
  if (r.status === 200) assert.equal(r.body.result, "syncing", JSON.stringify(r.body));
  else assert.deepEqual([r.status, r.body.code], [400, "BLOCK_BAD_PARENT"], JSON.stringify(r.body));
  await assertUnchanged(s, "wrong parent");
});

test("a block timestamped an hour ahead of the node's clock is refused with BLOCK_FUTURE_TIMESTAMP", async () => {
  const s = await client.status();
  const parent = await parentOf(s);
  const bytes = await build(parent, { timestampMs: Date.now() + 3_600_000 });
  await assertRefused(bytes, "BLOCK_FUTURE_TIMESTAMP", s);
});

test("a block carrying a transaction whose signature does not verify is refused with BLOCK_BAD_TX_SIGNATURE", async () => {
  const s = await client.status();
  const parent = await parentOf(s);
  const acct = net.dn.loadAccounts[0]!;
  const sender = importPrivateKeyPem(acct.privateKeyPem);
  const nonce = BigInt((await client.account(acct.publicKey)).nonce);
  const tx = signTransfer(net.genesis.hash, sender, randomBytes(32), 1n, nonce);
  const signature = Buffer.from(tx.signature);
  signature[10] = signature[10]! ^ 0x01;
  // A copy with the flipped signature; the block's transaction root is computed over this
  // copy (build uses txRootOf), so the signature rule is the only one it can break first.
  const tampered: Transaction = { ...tx, signature };
  await assertRefused(await build(parent, { txs: [tampered] }), "BLOCK_BAD_TX_SIGNATURE", s);
});

test("garbage bytes and a truncated block are refused with a decode error", async () => {
  const s = await client.status();
  const parent = await parentOf(s);
  const valid = await build(parent);
  const cases: [string, Buffer][] = [
    ["garbage", Buffer.alloc(400, 0xa5)],
    ["truncated header", valid.subarray(0, 100)],
    ["truncated signature", valid.subarray(0, valid.length - 1)],
    ["trailing byte", Buffer.concat([valid, Buffer.from([0])])],
  ];
  for (const [what, bytes] of cases) {
    const r = await post(bytes);
    assert.equal(r.status, 400, `${what}: answered ${r.status} ${JSON.stringify(r.body)}`);
    assert.match(r.body.code ?? "", /^(BLOCK_|DECODE_)/, `${what}: ${JSON.stringify(r.body)}`);
    await assertUnchanged(s, what);
  }
});

test("a body larger than the block size limit is refused with 413", async () => {
  const s = await client.status();
  // Over the API's body limit of BLOCK_BYTES_MAX + 1 KiB: refused on the declared length alone.
  assert.equal(await postHeadersOnly(BLOCK_BYTES_MAX + 2048), 413);
  await assertUnchanged(s, "oversized body");
  // A body of the largest block size is read and reaches the decoder, which refuses this one.
  const atLimit = await post(Buffer.alloc(BLOCK_BYTES_MAX, 0x01));
  assert.equal(atLimit.status, 400, JSON.stringify(atLimit.body));
  assert.match(atLimit.body.code ?? "", /^(BLOCK_|DECODE_)/, JSON.stringify(atLimit.body));
  await assertUnchanged(s, "body at the block size limit");
});

test("two valid blocks for one height announced at once: one is imported, the other is stale, neither counts as invalid", async () => {
  const counted = await rejected();
  for (let round = 0; round < 3; round++) {
    const s = await client.status();
    const parent = await parentOf(s);
    const first = await build(parent);
    // The same slot a millisecond later: a different, equally valid block.
    const second = await build(parent, { timestampMs: decodeBlock(first).header.timestampMs + 1 });
    const results = await Promise.all([post(first), post(second)]);
    for (const r of results) assert.equal(r.status, 200, `round ${round}: ${JSON.stringify(r.body)}`);
    assert.equal(results.filter((r) => r.body.result === "imported").length, 1, JSON.stringify(results));
    assert.equal((await client.status()).height, parent.height + 1, `round ${round}: one block landed`);
  }
  assert.equal(await rejected(), counted, "no block of the pairs was counted as invalid");
});

test("the node still imports a valid block after refusing invalid ones", async () => {
  const s = await client.status();
  const parent = await parentOf(s);
  await assertRefused(await build(parent, { key: generateKeyPair() }), "BLOCK_BAD_SIGNATURE", s);
  const total = await rejected();
  assert.ok(
    total >= refusedByRule,
    `chainvault_chain_blocks_rejected_total ${total} counts all ${refusedByRule} refusals`,
  );
  const r = await post(await build(parent));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, { result: "imported", height: s.height + 1 });
  const now = await client.status();
  assert.equal(now.height, s.height + 1);
  assert.equal(now.stateRoot, s.stateRoot, "an empty block leaves the state root as it was");
  const [hashAtParent] = await client.hashes(s.height, s.height);
  assert.equal(hashAtParent, s.headHash, "the new block extends the old head");
});

test("an invalid block served by a peer during sync is refused and the node stays healthy", async () => {
  const s = await client.status();
  const parent = await parentOf(s);
  const counted = await rejected("BLOCK_BAD_SIGNATURE");
  const bad = await build(parent, { key: generateKeyPair() });
  // Start heights of the block ranges the node asked the fake peer for.
  const blockRequests: number[] = [];
  const fake: Server = createServer((req, res) => {
    void (async () => {
      const u = new URL(req.url ?? "/", "http://fake");
      const json = (v: unknown): void => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(v));
      };
      if (u.pathname === "/status") {
        // A better chain by fork choice: same genesis, higher and much heavier.
        json({
          ...s,
          nodeId: "fake-peer",
          height: s.height + 5,
          headHash: randomBytes(32).toString("hex"),
          weight: (BigInt(s.weight) + 1000n).toString(),
          peers: [],
        });
      } else if (u.pathname === "/hashes") {
        // Node-0's own hashes, so the fork point is node-0's head.
        const from = Number(u.searchParams.get("from"));
        const to = Number(u.searchParams.get("to"));
        json(await client.hashes(from, Math.min(to, s.height)));
      } else if (u.pathname === "/blocks") {
        const from = Number(u.searchParams.get("from"));
        blockRequests.push(from);
        const frames: Buffer[] = [];
        if (from === s.height + 1) {
          const len = Buffer.alloc(4);
          len.writeUInt32BE(bad.length);
          frames.push(len, bad);
        }
        res.writeHead(200, { "content-type": "application/octet-stream" });
        res.end(Buffer.concat(frames));
      } else {
        res.writeHead(404).end();
      }
    })().catch((err: unknown) => {
      res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
  try {
    const fakeUrl = `http://127.0.0.1:${(fake.address() as { port: number }).port}`;
    await client.setPeers([fakeUrl]);
    await waitFor(
      "node-0 to fetch the block after its head from the fake peer",
      () => blockRequests.includes(s.height + 1),
      10_000,
      20,
    );
    await waitFor(
      "the refusal to be counted",
      async () => (await rejected("BLOCK_BAD_SIGNATURE")) > counted,
      5000,
      50,
    );
    await assertUnchanged(s, "malicious peer");
    const after = await client.status();
    assert.equal(after.peers[0]?.url, fakeUrl, "the fake peer is node-0's peer");
  } finally {
    fake.closeAllConnections();
    await new Promise<void>((r) => fake.close(() => r()));
  }
});
