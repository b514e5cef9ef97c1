/**
 * A check worker (see check-pool.ts): it knows the genesis and runs two kinds of job.
 *
 * - `check`: blocks as their encoded bytes; each is read without decoding its transactions
 *   into objects, its body checked against its header (transaction limit and root) and
 *   every signature verified. The reply names the first block that fails and why, or none.
 * - `lt`: for each block, the account leaves it removes and adds; the reply is each block's
 *   LtHash delta, which the main thread adds to the running commitment.
 */
import { parentPort, workerData } from "node:worker_threads";
import { Genesis, type GenesisDoc } from "./genesis.js";
import { LANES, LEAF_BYTES, LtHash } from "./lthash.js";
import { BlockError, BlockErrorCode, checkEncodedBlock } from "./validate.js";

export type CheckJob =
  | { t: "check"; j: number; bytes: Uint8Array; ends: Uint32Array }
  | { t: "lt"; j: number; leaves: Uint8Array; counts: Uint32Array };

export type CheckReply =
  | { j: number; fail?: { index: number; detail: Record<string, unknown>; message: string } }
  | { j: number; deltas: Uint16Array }
  | { j: number; err: string };

const genesis = new Genesis((workerData as { genesis: GenesisDoc }).genesis);
const port = parentPort!;

function check(job: Extract<CheckJob, { t: "check" }>): CheckReply {
  const all = Buffer.from(job.bytes.buffer, job.bytes.byteOffset, job.bytes.byteLength);
  let start = 0;
  for (let index = 0; index < job.ends.length; index++) {
    const end = job.ends[index]!;
    const bytes = all.subarray(start, end);
    start = end;
    try {
      checkEncodedBlock(genesis, bytes);
    } catch (err) {
      if (err instanceof BlockError)
        return { j: job.j, fail: { index, detail: err.detail, message: err.message } };
      // Only a decode error reaches here (bytes without the block layout, as a peer may
      // send): it names the block rather than failing the whole job.
      return {
        j: job.j,
        fail: {
          index,
          detail: { code: BlockErrorCode.Decode },
          message: `Invalid block: ${(err as Error).message}`,
        },
      };
    }
  }
  return { j: job.j };
}

function deltas(job: Extract<CheckJob, { t: "lt" }>): CheckReply {
  const blocks = job.counts.length / 2;
  const out = new Uint16Array(blocks * LANES);
  const leaves = Buffer.from(job.leaves.buffer, job.leaves.byteOffset, job.leaves.byteLength);
  let at = 0;
  for (let b = 0; b < blocks; b++) {
    const removed = job.counts[2 * b]!;
    const added = job.counts[2 * b + 1]!;
    const d = new LtHash();
    d.applyLeaves(leaves, at, removed, added);
    out.set(d.lanes, b * LANES);
    at += (removed + added) * LEAF_BYTES;
  }
  return { j: job.j, deltas: out };
}

port.on("message", (job: CheckJob) => {
  let reply: CheckReply;
  try {
    reply = job.t === "check" ? check(job) : deltas(job);
  } catch (err) {
    reply = { j: job.j, err: (err as Error).message };
  }
  if ("deltas" in reply) port.postMessage(reply, [reply.deltas.buffer as ArrayBuffer]);
  else port.postMessage(reply);
});
