// Goal: the crypto workers seal, open and check chunk ids exactly as crypto.ts does, so blobs written
// by either side read back on the other; method: real worker threads over shared buffers,
// cross-checked against the synchronous functions, plus a flipped bit and a wrong id.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, test } from "node:test";
import { chunkId, openInto, SEAL_OVERHEAD_BYTES, seal } from "../../src/vault/crypto.js";
import { CryptoWorkers } from "../../src/vault/crypto-workers.js";
import { FLAG_COMPRESSED } from "../../src/vault/pack.js";

const keys = { dataKey: randomBytes(32), idKey: randomBytes(32) };
const keysClass = { dataKey: randomBytes(32), idKey: randomBytes(32) };
const workers = new CryptoWorkers({ "": keys, keys: keysClass }, 2);
after(() => workers.close());

function shared(bytes: Uint8Array | number): Buffer {
  const n = typeof bytes === "number" ? bytes : bytes.length;
  const b = Buffer.from(new SharedArrayBuffer(n));
  if (typeof bytes !== "number") b.set(bytes);
  return b;
}

test("a worker checks a chunk against the HMAC-SHA256 id of crypto.ts, under the class's own id key", async () => {
  const data = shared(randomBytes(300_000));
  const id = chunkId(keysClass.idKey, data);
  const e = { id, flags: 0, rawLength: data.length };
  assert.equal(await workers.check("keys", e, shared(seal(keysClass.dataKey, data, id))), undefined);
  // The same bytes sealed for that id under the other class's data key, hashed with its id key.
  assert.equal(await workers.check("", e, shared(seal(keys.dataKey, data, id))), "does not hash to its id");
});

test("a blob sealed by a worker opens with openInto, and one sealed by seal opens on a worker", async () => {
  const data = shared(randomBytes(1_000_000));
  const id = chunkId(keys.idKey, data);
  const out = shared(data.length + SEAL_OVERHEAD_BYTES);
  const { len, flags } = await workers.seal("", id, data, out, 3);
  assert.equal(flags, 0, "random data is stored raw");
  const plain = Buffer.alloc(data.length);
  assert.equal(openInto(keys.dataKey, out.subarray(0, len), id, plain), data.length);
  assert.deepEqual(plain, data);

  const sealed = shared(seal(keys.dataKey, data, id));
  const back = shared(data.length + SEAL_OVERHEAD_BYTES);
  assert.equal(await workers.open("", { id, flags: 0, rawLength: data.length }, sealed, back), data.length);
  assert.deepEqual(back.subarray(0, data.length), data);
});

test("compressible data is compressed, flagged, and opens back to the original bytes", async () => {
  const data = shared(Buffer.alloc(800_000, "chainvault "));
  const id = chunkId(keys.idKey, data);
  const out = shared(data.length + SEAL_OVERHEAD_BYTES);
  const { len, flags } = await workers.seal("", id, data, out, 3);
  assert.equal(flags & FLAG_COMPRESSED, FLAG_COMPRESSED);
  assert.ok(len < data.length / 10);
  const back = shared(data.length + SEAL_OVERHEAD_BYTES);
  assert.equal(
    await workers.open("", { id, flags, rawLength: data.length }, out.subarray(0, len), back),
    data.length,
  );
  assert.deepEqual(back.subarray(0, data.length), data);
});

test("a worker refuses a blob with a flipped bit, a wrong id, or the other class's key", async () => {
  const data = shared(randomBytes(200_000));
  const id = chunkId(keys.idKey, data);
  const out = shared(data.length + SEAL_OVERHEAD_BYTES);
  const { len } = await workers.seal("", id, data, out, 3);
  const back = shared(data.length + SEAL_OVERHEAD_BYTES);
  const e = { id, flags: 0, rawLength: data.length };
  assert.equal(await workers.open("keys", e, out.subarray(0, len), back), "does not authenticate");
  assert.equal(
    await workers.open("", { ...e, id: randomBytes(32) }, out.subarray(0, len), back),
    "does not authenticate",
  );
  out[100]! ^= 1;
  assert.equal(await workers.open("", e, out.subarray(0, len), back), "does not authenticate");
});

test("open trusts the seal's binding to the id; check also finds a plaintext that does not hash to it", async () => {
  // A blob sealed for an id its plaintext does not hash to: only a key holder (a writer bug)
  // can make one. A restore (open) relies on the authentication under the id; verification
  // (check) hashes the plaintext and reports it.
  const data = shared(randomBytes(150_000));
  const wrongId = chunkId(keys.idKey, randomBytes(16));
  const sealed = shared(seal(keys.dataKey, data, wrongId));
  const e = { id: wrongId, flags: 0, rawLength: data.length };
  const back = shared(data.length + SEAL_OVERHEAD_BYTES);
  assert.equal(await workers.open("", e, sealed, back), data.length);
  assert.equal(await workers.check("", e, sealed), "does not hash to its id");
  const id = chunkId(keys.idKey, data);
  assert.equal(await workers.check("", { ...e, id }, shared(seal(keys.dataKey, data, id))), undefined);
});

test("workers booted ahead of the keys (prewarm) are adopted and check chunks under the keys given later", async () => {
  CryptoWorkers.prewarm(false);
  const other = { dataKey: randomBytes(32), idKey: randomBytes(32) };
  const late = new CryptoWorkers({ "": other }, 2);
  try {
    const data = shared(randomBytes(100_000));
    const id = chunkId(other.idKey, data);
    const sealed = seal(other.dataKey, data, id);
    const e = { id, flags: 0, rawLength: data.length };
    // Two jobs at once, so each of the two adopted workers takes one; each job has its own
    // buffer, as a check decrypts in place.
    assert.deepEqual(
      await Promise.all([late.check("", e, shared(sealed)), late.check("", e, shared(sealed))]),
      [undefined, undefined],
    );
  } finally {
    await late.close();
  }
});
