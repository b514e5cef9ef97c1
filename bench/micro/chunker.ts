/**
 * bench/micro/chunker: how fast the FastCDC chunker cuts random data on one core, with the
 * default parameters, over the whole buffer (`cutPoints`) and as a streaming reader does
 * (16 MiB reads into a fixed buffer, tail carried over). Random data is the worst case: no
 * long runs, so nearly every byte past the first minBytes of a chunk is hashed.
 *
 *   node --import tsx bench/micro/chunker.ts [--size-mib 512] [--rounds 5]
 *
 * Prints a table (best and median of the rounds) and ends with one JSON line.
 */
import { randomFillSync } from "node:crypto";
import { parseArgs } from "node:util";
import { cutPoints, DEFAULT_CHUNKER_PARAMS, gearTable, nextCut } from "../../src/vault/chunker.js";

const { values: args } = parseArgs({
  options: {
    "size-mib": { type: "string", default: "512" },
    rounds: { type: "string", default: "5" },
  },
});
const MiB = 1024 * 1024;
const sizeBytes = Number(args["size-mib"]) * MiB;
const rounds = Number(args.rounds);
// 16 MiB: the read size the backup reader is expected to use, four times maxBytes.
const READ_BYTES = 16 * MiB;

const params = DEFAULT_CHUNKER_PARAMS;
const gear = gearTable(randomFillSync(new Uint8Array(32)));

/** Cuts the whole buffer at once; returns the chunk count. */
function wholeBuffer(data: Uint8Array): number {
  let chunks = 0;
  for (const _ of cutPoints(data, params, gear)) chunks++;
  return chunks;
}

/** Cuts as a reader with a fixed buffer does, copying each read in; returns the chunk count. */
function streaming(data: Uint8Array, buf: Uint8Array): number {
  let chunks = 0;
  let filled = 0;
  for (let read = 0; read < data.length; ) {
    const n = Math.min(READ_BYTES, data.length - read);
    buf.set(data.subarray(read, read + n), filled);
    filled += n;
    read += n;
    const eof = read === data.length;
    let start = 0;
    // Keeping maxBytes buffered ahead means a cut is always decided and nothing is scanned twice.
    while (start < filled && (eof || filled - start >= params.maxBytes)) {
      start = nextCut(buf, start, filled, eof, params, gear);
      chunks++;
    }
    buf.copyWithin(0, start, filled);
    filled -= start;
  }
  return chunks;
}

function measure(name: string, run: () => number): Record<string, string | number> {
  const mbPerSec: number[] = [];
  let chunks = 0;
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    chunks = run();
    mbPerSec.push(sizeBytes / 1e6 / ((performance.now() - t) / 1000));
  }
  mbPerSec.sort((a, b) => a - b);
  return {
    measure: name,
    "best MB/s": Math.round(mbPerSec.at(-1)!),
    "median MB/s": Math.round(mbPerSec[Math.floor(mbPerSec.length / 2)]!),
    chunks,
    "mean chunk KiB": Math.round(sizeBytes / chunks / 1024),
  };
}

process.stderr.write(`Filling ${sizeBytes / MiB} MiB with random bytes\n`);
const data = new Uint8Array(sizeBytes);
// randomFillSync fills at most 2 GiB - 1 per call; 64 MiB steps stay well inside that.
for (let offset = 0; offset < sizeBytes; offset += 64 * MiB) {
  randomFillSync(data, offset, Math.min(64 * MiB, sizeBytes - offset));
}
const buf = new Uint8Array(READ_BYTES + params.maxBytes);
buf.fill(0); // Touch the pages now so page faults stay out of the timing.

const results = [
  measure("cutPoints, whole buffer", () => wholeBuffer(data)),
  measure("nextCut, 16 MiB reads", () => streaming(data, buf)),
];
console.table(results);
console.log(JSON.stringify({ bench: "chunker", sizeBytes, rounds, params, results }));
