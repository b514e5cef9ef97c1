/**
 * The source of a crypto worker (see crypto-workers.ts), plain JavaScript evaluated as is,
 * so it runs the same from the build and from the TypeScript sources.
 */

// The worker. Constants and layouts are those of crypto.ts and pack-writer.ts: nonce (12) ||
// AES-256-GCM ciphertext || tag (16), the chunk id as associated data, 64 KiB cipher slices,
// a 64 KiB zstd probe (level 1) that must save 3%, and the same 3% rule for the whole chunk.
// zstd runs synchronously on this thread with one reused context each way. Nothing is
// allocated per chunk, so no fresh pages are faulted in: a chunk is compressed straight into
// its seal buffer and encrypted there in place (each cipher slice is copied back over the
// input it was made from), and a blob is decrypted in place in its read buffer before it is
// decompressed into the output. The cipher's output slices are the only garbage; V8 collects
// external memory only after ~64 MiB of it, so the worker runs a minor collection itself
// every 2 MiB of sealed or opened bytes (a restore peaks ~14 MiB lower than with 8 MiB,
// as fast: the worker's young generation holds almost nothing else).
export const WORKER_SOURCE = `
const { createCipheriv, createDecipheriv, createHmac, randomBytes } = require("node:crypto");
const { parentPort, workerData } = require("node:worker_threads");
const zstd = require(workerData.zstdPath);
// Set by the first message, before any job (a worker may be booted before the keys exist).
const keys = {};
function setKeys(given) {
  for (const [cls, k] of Object.entries(given)) keys[cls] = { dataKey: Buffer.from(k.dataKey), idKey: Buffer.from(k.idKey) };
}
const NONCE = 12, TAG = 16, SLICE = 65536, PROBE = 65536, MIN_SAVING = 0.97, FLAG_COMPRESSED = 1;
const cctx = new zstd.CCtx(), dctx = new zstd.DCtx();
const probeOut = Buffer.allocUnsafe(zstd.compressBound(PROBE));
let scratch = Buffer.alloc(0);
function scratchOf(n) {
  // Sized for a chunk of up to 4 MiB at once (the default maximum is 2 MiB), so it is made once.
  if (scratch.length < n) scratch = Buffer.allocUnsafe(Math.max(n, 4 * 1048576));
  return scratch;
}
function keyOf(cls) { return keys[cls] || keys[""]; }
// Copies b into out at n with memcpy (Buffer#fill with a buffer value); Buffer#copy into shared
// memory copies word by word with relaxed atomics, ~10x slower (util/bytes.ts). Returns b's length.
function put(out, n, b) { if (b.length > 0) out.fill(b, n, n + b.length); return b.length; }
// Seals plain into out: nonce || ciphertext || tag. plain may be out[NONCE, ...) itself.
function sealInto(key, plain, aad, out) {
  const nonce = randomBytes(NONCE);
  nonce.copy(out, 0);
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(aad);
  let n = NONCE;
  for (let p = 0; p < plain.length; p += SLICE) n += put(out, n, c.update(plain.subarray(p, p + SLICE)));
  n += put(out, n, c.final());
  n += put(out, n, c.getAuthTag());
  return n;
}
// Opens sealed into out; out may be sealed itself (the plaintext lands 12 bytes before the
// ciphertext it came from, which has been read by then). Returns the length, or undefined.
function openInto(key, sealed, aad, out) {
  if (sealed.length < NONCE + TAG || out.length < sealed.length - NONCE - TAG) return undefined;
  const d = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, NONCE));
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - TAG));
  const end = sealed.length - TAG;
  let n = 0;
  for (let p = NONCE; p < end; p += SLICE) n += put(out, n, d.update(sealed.subarray(p, Math.min(end, p + SLICE))));
  try { n += put(out, n, d.final()); } catch { return undefined; }
  return n;
}
function job(m) {
  const k = keyOf(m.cls);
  const data = Buffer.from(m.buf, m.off, m.len);
  const id = Buffer.from(m.id);
  if (m.t === "seal") {
    const out = Buffer.from(m.out);
    if (m.level > 0 && (data.length <= 2 * PROBE || cctx.compress(probeOut, data.subarray(0, PROBE), 1) < PROBE * MIN_SAVING)) {
      // Room for 97% of the chunk: a frame that does not fit did not save enough.
      const room = Math.min(out.length - NONCE - TAG, Math.floor(data.length * MIN_SAVING));
      let n = -1;
      try { n = cctx.compress(out.subarray(NONCE, NONCE + room), data, m.level); } catch {}
      if (n >= 0) return { len: sealInto(k.dataKey, out.subarray(NONCE, NONCE + n), id, out), flags: FLAG_COMPRESSED };
    }
    return { len: sealInto(k.dataKey, data, id, out), flags: 0 };
  }
  const compressed = (m.flags & FLAG_COMPRESSED) !== 0;
  // Without an output buffer (a check), a compressed chunk is decompressed into the scratch
  // buffer and a raw one is checked where it was decrypted.
  let out;
  if (m.out) out = Buffer.from(m.out);
  else if (compressed) out = scratchOf(m.rawLength);
  else out = data;
  const into = compressed ? data : out;
  const n = openInto(k.dataKey, data, id, into);
  if (n === undefined) return { err: "does not authenticate" };
  let len = n;
  if (compressed) {
    // The output buffer bounds what a hostile frame can expand to.
    try { len = dctx.decompress(out.subarray(0, m.rawLength), into.subarray(0, n)); } catch { return { err: "does not decompress into its recorded length" }; }
  }
  if (len !== m.rawLength) return { err: "has " + len + " bytes, not " + m.rawLength };
  if (m.rehash && !createHmac("sha256", k.idKey).update(out.subarray(0, len)).digest().equals(id)) return { err: "does not hash to its id" };
  return { len };
}
require("node:v8").setFlagsFromString("--expose-gc");
const collect = require("node:vm").runInNewContext("gc");
const GC_EVERY = 2 * 1048576;
let garbage = 0;
parentPort.on("message", (m) => {
  if (m.t === "keys") return setKeys(m.keys);
  if ((garbage += m.len) >= GC_EVERY) { garbage = 0; collect({ type: "minor" }); }
  let r;
  try { r = job(m); } catch (e) { r = { err: String((e && e.message) || e) }; }
  parentPort.postMessage({ j: m.j, ...r });
});
`;
