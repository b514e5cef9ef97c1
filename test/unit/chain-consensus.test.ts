// Goal: prove the proof-of-authority rules pick proposers, weigh blocks and choose forks as documented; method: evaluate the pure functions over small validator sets and hand-built chain tips.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  blockWeight,
  type ConsensusParams,
  compareTips,
  earliestTimestamp,
  IN_TURN_WEIGHT,
  inTurnProposer,
  isBetterTip,
  OUT_OF_TURN_WEIGHT,
  proposerRank,
} from "../../src/chain/consensus.js";
import type { ChainTip } from "../../src/chain/types.js";

const tip = (weight: bigint, hashByte: number, height = 10): ChainTip => ({
  height,
  hash: Buffer.alloc(32, hashByte),
  weight,
});

test("inTurnProposer rotates through the validators by height", () => {
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6].map((h) => inTurnProposer(h, 3)),
    [0, 1, 2, 0, 1, 2, 0],
  );
  assert.equal(inTurnProposer(1_000_003, 1), 0);
});

test("proposerRank is 0 in turn and counts forward through the list with wrap-around", () => {
  // At height 2 of 3 validators, validator 2 is in turn, then 0, then 1.
  assert.equal(proposerRank(2, 2, 3), 0);
  assert.equal(proposerRank(2, 0, 3), 1);
  assert.equal(proposerRank(2, 1, 3), 2);
});

test("at every height the validators' ranks are exactly 0 to n-1", () => {
  const n = 5;
  for (let height = 0; height < 2 * n; height++) {
    const ranks = Array.from({ length: n }, (_, p) => proposerRank(height, p, n)).sort((p, q) => p - q);
    assert.deepEqual(ranks, [0, 1, 2, 3, 4], `height ${height}`);
    assert.equal(proposerRank(height, inTurnProposer(height, n), n), 0);
  }
});

test("blockWeight is 2 for the in-turn proposer and 1 for any other", () => {
  assert.equal(IN_TURN_WEIGHT, 2n);
  assert.equal(OUT_OF_TURN_WEIGHT, 1n);
  assert.equal(blockWeight(4, 1, 3), 2n);
  assert.equal(blockWeight(4, 2, 3), 1n);
  assert.equal(blockWeight(4, 0, 3), 1n);
  // A sole validator is always in turn.
  assert.equal(blockWeight(9, 0, 1), 2n);
});

test("earliestTimestamp adds one block time plus one delay per rank", () => {
  const p: ConsensusParams = { validatorCount: 4, blockTimeMs: 1000, outOfTurnDelayMs: 250 };
  assert.equal(earliestTimestamp(p, 10_000, 0), 11_000);
  assert.equal(earliestTimestamp(p, 10_000, 1), 11_250);
  assert.equal(earliestTimestamp(p, 10_000, 3), 11_750);
});

test("the heavier chain wins regardless of height or hash", () => {
  const heavy = tip(20n, 0xff, 8);
  const light = tip(19n, 0x00, 12);
  assert.ok(compareTips(heavy, light) < 0);
  assert.ok(compareTips(light, heavy) > 0);
  assert.equal(isBetterTip(heavy, light), true);
  assert.equal(isBetterTip(light, heavy), false);
});

test("between equally heavy chains the lower head hash wins", () => {
  const low = tip(20n, 0x01);
  const high = tip(20n, 0x02);
  assert.ok(compareTips(low, high) < 0);
  assert.ok(compareTips(high, low) > 0);
  assert.equal(isBetterTip(low, high), true);
  assert.equal(isBetterTip(high, low), false);
});

test("a tip is not better than itself, so fork choice does not flap", () => {
  const a = tip(20n, 0x05);
  const same = tip(20n, 0x05);
  assert.equal(compareTips(a, same), 0);
  assert.equal(isBetterTip(a, same), false);
  assert.equal(isBetterTip(same, a), false);
});

test("weights beyond 2^53 compare exactly as bigints", () => {
  const big = 2n ** 60n;
  assert.equal(isBetterTip(tip(big + 1n, 0xff), tip(big, 0x00)), true);
});
