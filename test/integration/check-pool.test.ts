// Goal: prove the check workers take waiting signature jobs in order of height, so that a sync whose overlapping range requests answer out of order verifies the range its import needs next first; method: real worker threads check real generated blocks, many jobs of high heights are queued, then one of low heights, and the order in which they finish is recorded.
import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { encodeBlock } from "../../src/chain/block.js";
import { CheckPool } from "../../src/chain/check-pool.js";
import { generateChain } from "../../src/chain/generator.js";
import { Genesis } from "../../src/chain/genesis.js";
import { ChainStore } from "../../src/chain/storage/chain-store.js";
import { SEGMENT_BYTES_DEFAULT } from "../../src/chain/storage/chain-types.js";
import { createLogger } from "../../src/util/logger.js";
import { tempDir } from "./_chain-fixture.js";

// 12 blocks of 40 transfers: 492 signatures, one job (the pool cuts jobs at 512).
const BLOCKS_PER_JOB = 12;

test("a job of lower height queued after many higher ones is checked before them", async (t) => {
  const cores = availableParallelism();
  // Two jobs per worker are in flight; 8 per core wait behind them.
  const highJobs = 10 * cores;
  const blocks = BLOCKS_PER_JOB * (highJobs + 1);
  const dir = join(tempDir(t, "check-pool"), "net");
  const gen = await generateChain(dir, { blocks, txsPerBlock: 40, payloadBytes: 16, validators: 2 });
  const genesis = Genesis.load(join(dir, "genesis.json"));
  const store = ChainStore.open(
    genesis,
    { dataDir: gen.nodeDir, segmentBytes: SEGMENT_BYTES_DEFAULT, undoDepth: 0 },
    createLogger({ level: "silent" }),
  );
  const bytes = Array.from({ length: blocks }, (_, i) => encodeBlock(store.readBlock(i + 1)));
  await store.close();
  const range = (job: number): Buffer[] => bytes.slice(job * BLOCKS_PER_JOB, (job + 1) * BLOCKS_PER_JOB);

  const pool = CheckPool.for(genesis);
  pool.warm();
  const finished: string[] = [];
  const checks: Promise<void>[] = [];
  const track = (name: string, job: number): void => {
    checks.push(
      pool.check(range(job)).then((err) => {
        assert.equal(err, undefined, `${name} failed: ${err?.message}`);
        finished.push(name);
      }),
    );
  };
  // Heights above the first job's, queued first (as a later range that answered sooner).
  for (let k = 1; k <= highJobs; k++) track(`high-${k}`, k);
  track("low", 0);
  await Promise.all(checks);

  // In arrival order the low job would wait for all 8 per core queued before it (at least
  // 8 * cores + 1 finish first); in height order it goes to the first worker with room, so
  // about the jobs in flight and three per other worker finish first (~3 * cores).
  const before = finished.indexOf("low");
  assert.ok(
    before <= 5 * cores,
    `${before} higher jobs finished before the lower one: ${finished.join(", ")}`,
  );
});
