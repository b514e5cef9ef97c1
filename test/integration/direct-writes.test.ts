// Goal: with CHAINVAULT_DIRECT_IO=1, packs streamed to a local repository are written around
// the page cache (O_DIRECT) and read back byte for byte at every length that meets the staging
// slots' and blocks' edges; a write that does not follow the last one is refused and leaves
// nothing; and by default, or where O_DIRECT cannot be had (no WebAssembly memory under
// `ulimit -v`), the same objects are written through the page cache. Method: a real LocalBackend in a temp directory;
// the open descriptor's flags read from /proc/self/fdinfo while the object is being written; a
// child process under `ulimit -v 4000000` running the built backend.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { constants, existsSync } from "node:fs";
import { type FileHandle, mkdtemp, open, readdir, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  createFileWriter,
  DIRECT_ALIGN,
  type DirectIo,
  SLOT_BYTES,
} from "../../src/vault/backends/direct-writes.js";
import { LocalBackend } from "../../src/vault/backends/local.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** A backend in a fresh temp directory, made with CHAINVAULT_DIRECT_IO set to `directIo`. */
async function repoFor(t: TestContext, directIo = "1"): Promise<{ dir: string; backend: LocalBackend }> {
  const dir = await mkdtemp(join(tmpdir(), "chainvault-direct-writes-"));
  const before = process.env.CHAINVAULT_DIRECT_IO;
  process.env.CHAINVAULT_DIRECT_IO = directIo;
  let backend: LocalBackend;
  try {
    backend = new LocalBackend(dir);
  } finally {
    if (before === undefined) delete process.env.CHAINVAULT_DIRECT_IO;
    else process.env.CHAINVAULT_DIRECT_IO = before;
  }
  t.after(async () => {
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, backend };
}

/** The open-file flags of each of this process's descriptors on a temporary file under `dir`. */
async function tmpFileFlags(dir: string): Promise<number[]> {
  const flags: number[] = [];
  for (const fd of await readdir("/proc/self/fd")) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => "");
    if (target.startsWith(dir) && target.includes(".tmp-")) {
      const info = await readFile(`/proc/self/fdinfo/${fd}`, "utf8").catch(() => "");
      const m = /^flags:\s+([0-7]+)$/m.exec(info);
      if (m) flags.push(Number.parseInt(m[1]!, 8));
    }
  }
  if (flags.length === 0) throw new Error(`No open temporary file under ${dir}`);
  return flags;
}

/** Writes `data` through openWriter in pieces of random sizes; returns the O_DIRECT flag seen while writing. */
async function stream(backend: LocalBackend, dir: string, name: string, data: Buffer): Promise<boolean> {
  const w = await backend.openWriter(name);
  let pos = 0;
  while (pos < data.length) {
    const n = Math.min(data.length - pos, 1 + Math.floor(Math.random() * 300_000));
    await w.write(data.subarray(pos, pos + n), pos);
    pos += n;
  }
  // One descriptor: a fallback one would have been opened beside it.
  const flags = await tmpFileFlags(dir);
  assert.equal(flags.length, 1, `${flags.length} descriptors on the temporary file`);
  await w.commit();
  return (flags[0]! & constants.O_DIRECT) !== 0;
}

test("streamed objects are written with O_DIRECT and read back byte for byte at lengths on and beside block and slot edges", async (t) => {
  const { dir, backend } = await repoFor(t);
  const sizes = [
    0,
    1,
    DIRECT_ALIGN - 1,
    DIRECT_ALIGN,
    DIRECT_ALIGN + 1,
    SLOT_BYTES - 1,
    SLOT_BYTES,
    SLOT_BYTES + 1,
    // More than the staging slots hold, so slots are reused while writes are in flight.
    17 * SLOT_BYTES + 12_345,
  ];
  for (const [i, size] of sizes.entries()) {
    const data = randomBytes(size);
    const name = `data/ledger/${String(i).padStart(2, "0")}`;
    assert.equal(
      await stream(backend, dir, name, data),
      true,
      `object of ${size} bytes not written with O_DIRECT`,
    );
    const back = await backend.get(name);
    assert.equal(back.length, size, `object of ${size} bytes reads back as ${back.length}`);
    assert.ok(back.equals(data), `object of ${size} bytes differs after the round trip`);
  }
  assert.deepEqual(
    (await readdir(join(dir, "data", "ledger"))).sort(),
    sizes.map((_, i) => String(i).padStart(2, "0")),
  );
});

test("a write that does not follow the previous one is refused and leaves no file", async (t) => {
  const { dir, backend } = await repoFor(t);
  const w = await backend.openWriter("data/ledger/gap");
  await w.write(randomBytes(1000), 0);
  await assert.rejects(w.write(randomBytes(10), 2000), /must follow each other: 2000 after 1000/);
  await w.abort();
  assert.deepEqual(await readdir(join(dir, "data", "ledger")), []);
});

test("by default (or with CHAINVAULT_DIRECT_IO=0) streamed objects go through the page cache, byte for byte", async (t) => {
  for (const setting of ["", "0"]) {
    const made = await repoFor(t, setting);
    const data = randomBytes(2 * SLOT_BYTES + 7);
    assert.equal(await stream(made.backend, made.dir, "data/state/p", data), false, `with "${setting}"`);
    assert.ok((await made.backend.get("data/state/p")).equals(data));
  }
});

test("without WebAssembly memory (ulimit -v 4000000) a streamed object is written through the page cache, byte for byte", async (t) => {
  const built = join(ROOT, "dist", "src", "vault", "backends", "local.js");
  if (!existsSync(built)) throw new Error(`${built} is missing: run npm run build first (npm test does)`);
  const { dir } = await repoFor(t);
  const child = `
    import { LocalBackend } from ${JSON.stringify(built)};
    import { readdirSync, readlinkSync, readFileSync, constants } from "node:fs";
    const b = new LocalBackend(${JSON.stringify(dir)});
    const data = Buffer.alloc(3 * 1048576 + 5);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 11)) & 255;
    const w = await b.openWriter("data/ledger/u");
    for (let p = 0; p < data.length; p += 100000) await w.write(data.subarray(p, Math.min(data.length, p + 100000)), p);
    let flags = -1;
    for (const fd of readdirSync("/proc/self/fd")) {
      let t = ""; try { t = readlinkSync("/proc/self/fd/" + fd); } catch {}
      if (t.includes(".tmp-")) flags = parseInt(/^flags:\\s+([0-7]+)$/m.exec(readFileSync("/proc/self/fdinfo/" + fd, "utf8"))[1], 8);
    }
    await w.commit();
    let wasm = true; try { new WebAssembly.Memory({ initial: 1 }); } catch { wasm = false; }
    console.log(JSON.stringify({ wasm, direct: (flags & constants.O_DIRECT) !== 0, same: (await b.get("data/ledger/u")).equals(data) }));
  `;
  const r = spawnSync(
    "bash",
    ["-c", `ulimit -v 4000000 && exec "${process.execPath}" --input-type=module -e "$0"`, child],
    // Asked for, so that only the missing memory stops it.
    { encoding: "utf8", env: { ...process.env, CHAINVAULT_DIRECT_IO: "1" } },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), { wasm: false, direct: false, same: true });
});

function einval(): NodeJS.ErrnoException {
  return Object.assign(new Error("EINVAL: invalid argument, open"), { code: "EINVAL" });
}

test("a file system that refuses O_DIRECT at open (after creating the file, as Linux does): the object is written through the page cache, no stray file", async (t) => {
  const { dir } = await repoFor(t);
  const path = join(dir, "obj.tmp-1");
  const io: DirectIo = {
    open: async (p, flags, mode) => {
      await (await open(p, flags & ~constants.O_DIRECT, mode)).close();
      throw einval();
    },
    write: () => Promise.reject(new Error("no direct write expected")),
  };
  let refused = 0;
  const w = await createFileWriter(path, 0o600, true, () => refused++, io);
  const data = randomBytes(SLOT_BYTES + 99);
  await w.write(data, 0);
  await w.finish();
  assert.equal(refused, 1);
  assert.ok((await readFile(path)).equals(data));
  assert.deepEqual(await readdir(dir), ["obj.tmp-1"]);
});

test("a file system that refuses direct writes: the staged bytes go through one ordinary descriptor, byte for byte", async (t) => {
  const { dir } = await repoFor(t);
  const path = join(dir, "obj.tmp-2");
  let refusedWrites = 0;
  const io: DirectIo = {
    open: (p, flags, mode) => open(p, flags, mode),
    // Every direct write is refused, after a pause, so that several are refused at once.
    write: async (_fh: FileHandle) => {
      await new Promise((r) => setTimeout(r, 20));
      refusedWrites++;
      throw einval();
    },
  };
  let refused = 0;
  const w = await createFileWriter(path, 0o600, true, () => refused++, io);
  const data = randomBytes(5 * SLOT_BYTES + 4321);
  for (let p = 0; p < data.length; p += 700_000)
    await w.write(data.subarray(p, Math.min(data.length, p + 700_000)), p);
  // The five full slots were sent at once; once all are refused (and the fallback opened),
  // the direct descriptor and a single fallback one, not one per refused write.
  while (refusedWrites < 5) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal((await tmpFileFlags(dir)).length, 2);
  await w.finish();
  assert.ok(refusedWrites >= 2, `${refusedWrites} refused writes`);
  assert.equal(refused, refusedWrites);
  assert.ok((await readFile(path)).equals(data));
});
