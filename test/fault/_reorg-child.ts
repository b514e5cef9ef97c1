// Child process for reorg-crash.test.ts: opens a store and reorganises it onto the blocks
// in a job file, so that a crash point can kill it in the middle.
import { readFileSync } from "node:fs";
import { decodeBlock } from "../../src/chain/block.js";
import { Genesis } from "../../src/chain/genesis.js";
import { ChainStore, prepareBlock } from "../../src/chain/storage/chain-store.js";
import { silentLogger } from "../../src/util/logger.js";

const job = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as {
  dataDir: string;
  genesis: unknown;
  ancestor: number;
  blocks: string[];
};
const store = ChainStore.open(
  Genesis.parse(job.genesis),
  { dataDir: job.dataDir, segmentBytes: 4096, undoDepth: 0 },
  silentLogger(),
);
const blocks = job.blocks.map((h) => {
  const b = Buffer.from(h, "hex");
  return prepareBlock(decodeBlock(b), b);
});
await store.reorg(job.ancestor, blocks);
await store.close();
