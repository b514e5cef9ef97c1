// Goal: prove the ledger generator's append mode continues an existing chain with valid blocks and refuses to write blocks from the future; method: generate 200 blocks with room reserved, append 50 to node-0's data, validate the whole directory offline with validateNodeData, then ask for more blocks than the past slots allow.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { generateChain } from "../../src/chain/generator.js";
import { Genesis } from "../../src/chain/genesis.js";
import { validateNodeData } from "../../src/ledger/validate.js";
import { tempDir } from "./_chain-fixture.js";

// 8 KiB segments: the 250-block chain spans many sealed segments and the append crosses seals.
const SEGMENT_BYTES = 8 * 1024;

test("appended blocks continue the chain and the whole chain validates", async (t) => {
  const dir = join(tempDir(t, "gen-append"), "net");
  const first = await generateChain(dir, {
    blocks: 200,
    txsPerBlock: 8,
    payloadBytes: 64,
    validators: 2,
    segmentBytes: SEGMENT_BYTES,
    reserveBlocks: 50,
  });
  assert.equal(first.height, 200);

  const appended = await generateChain(dir, { blocks: 50, txsPerBlock: 8, payloadBytes: 64, append: true });
  assert.equal(appended.height, 250);
  assert.ok(appended.ledgerBytes > 0 && appended.ledgerBytes < first.ledgerBytes);

  const genesis = Genesis.load(join(dir, "genesis.json"));
  const report = await validateNodeData(first.nodeDir, genesis);
  assert.equal(report.fault, undefined);
  assert.equal(report.ok, true);
  assert.equal(report.validHeight, 250);
  assert.equal(report.txs, 250 * 8);
  assert.equal(report.stateDbMatches, true);
  assert.equal(report.ledgerBytes, first.ledgerBytes + appended.ledgerBytes);
  // Both validators signed appended heights: their watermarks must cover the new tip.
  for (const node of ["node-0", "node-1"]) {
    const wm = JSON.parse(readFileSync(join(dir, node, "keys", "watermark.json"), "utf8")) as {
      height: number;
    };
    assert.equal(wm.height, 250);
  }
});

test("append refuses blocks whose slots are still in the future", async (t) => {
  const dir = join(tempDir(t, "gen-append-future"), "net");
  await generateChain(dir, { blocks: 20, txsPerBlock: 2, validators: 1, reserveBlocks: 5 });
  await assert.rejects(
    generateChain(dir, { blocks: 1000, txsPerBlock: 2, append: true }),
    (err: Error) => err instanceof RangeError && /--reserve-blocks 1000/.test(err.message),
  );
  // The refused append wrote nothing and released the lock: a fitting one still works.
  const r = await generateChain(dir, { blocks: 5, txsPerBlock: 2, append: true });
  assert.equal(r.height, 25);
  const report = await validateNodeData(r.nodeDir, Genesis.load(join(dir, "genesis.json")));
  assert.equal(report.ok, true);
  assert.equal(report.validHeight, 25);
});
