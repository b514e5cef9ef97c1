// Goal (one file for three pure modules: each test process costs seconds of start-up on this shared machine): prove the vault's pure parts decide correctly: the retention policy keeps exactly what restic's rules keep (per host and source, with its tag filter, refusing a policy that keeps nothing), the stored formats (packs, index objects, snapshot manifests, key files) round-trip exactly and report every kind of damage, and restore's path checks reject every tree that could write outside the target; method: hand-made snapshot lists with known times, objects built in memory with the real encoders and keys and then damaged one way at a time (flipped bits, truncation, forged headers, a manifest re-sealed with the data key), and hand-made hostile trees and link targets.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { test } from "node:test";
import { copyInto } from "../../src/util/bytes.js";
import { decodeIndex, encodeIndex, type PackInfo } from "../../src/vault/chunk-index.js";
import { open, publicKeyBytes, seal, signingKeyOf } from "../../src/vault/crypto.js";
import { VaultError, VaultErrorCode } from "../../src/vault/errors.js";
import {
  decodeKeyFile,
  encodeKeyFile,
  newMasterKey,
  unwrapMasterKey,
  wrapMasterKey,
} from "../../src/vault/keyfile.js";
import {
  FLAG_COMPRESSED,
  PACK_MAGIC,
  PackBuilder,
  packObjectName,
  parsePack,
  parsePackObjectName,
} from "../../src/vault/pack.js";
import { assertSafePath, checkTree, symlinkStaysInside } from "../../src/vault/restore-paths.js";
import { applyRetention, isoWeek, type RetentionInput } from "../../src/vault/retention.js";
import { decodeSnapshot, encodeSnapshot, type FileNode, type Manifest } from "../../src/vault/snapshot.js";

// Retention policy and ISO weeks.

const GROUP = "host-a\u0000node-0";

function snap(id: string, time: string, tags: string[] = [], group = GROUP): RetentionInput {
  return { id, time, tags, group };
}

function kept(inputs: RetentionInput[], policy: Parameters<typeof applyRetention>[1]): string[] {
  return applyRetention(inputs, policy)
    .filter((d) => d.keep)
    .map((d) => d.id)
    .sort();
}

/** One snapshot every `stepMs` from `start`, ids s00, s01, …, oldest first. */
function series(start: string, stepMs: number, count: number): RetentionInput[] {
  const t0 = Date.parse(start);
  return Array.from({ length: count }, (_, i) =>
    snap(`s${String(i).padStart(2, "0")}`, new Date(t0 + i * stepMs).toISOString()),
  );
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

test("keep-last keeps the N newest snapshots and nothing else", () => {
  const s = series("2026-03-01T00:00:00.000Z", HOUR, 6);
  assert.deepEqual(kept(s, { last: 2 }), ["s04", "s05"]);
  const d = applyRetention(s, { last: 2 });
  assert.deepEqual(d.find((x) => x.id === "s05")?.reasons, ["last"]);
  assert.deepEqual(d.find((x) => x.id === "s00")?.reasons, []);
  // Decisions come back oldest first, one per snapshot.
  assert.deepEqual(
    d.map((x) => x.id),
    s.map((x) => x.id),
  );
});

test("keep-last larger than the number of snapshots keeps them all", () => {
  const s = series("2026-03-01T00:00:00.000Z", HOUR, 3);
  assert.deepEqual(kept(s, { last: 10 }), ["s00", "s01", "s02"]);
});

test("keep-hourly keeps the newest snapshot of each of the N latest hours that have one", () => {
  // Four snapshots an hour (every 15 minutes) over five hours.
  const s = series("2026-03-01T10:00:00.000Z", HOUR / 4, 20);
  // Hours 14, 13 and 12: their last quarter is s19, s15 and s11.
  assert.deepEqual(kept(s, { hourly: 3 }), ["s11", "s15", "s19"]);
});

test("hours without a snapshot do not use up the hourly allowance", () => {
  const s = [
    snap("a", "2026-03-01T01:10:00.000Z"),
    snap("b", "2026-03-01T05:10:00.000Z"),
    snap("c", "2026-03-01T05:50:00.000Z"),
    snap("d", "2026-03-01T09:00:00.000Z"),
  ];
  assert.deepEqual(kept(s, { hourly: 3 }), ["a", "c", "d"]);
});

test("keep-daily keeps the newest snapshot of each of the N latest days, in UTC", () => {
  const s = [
    snap("mon-early", "2026-03-02T00:30:00.000Z"),
    snap("mon-late", "2026-03-02T23:59:59.000Z"),
    snap("tue", "2026-03-03T12:00:00.000Z"),
    snap("wed-1", "2026-03-04T06:00:00.000Z"),
    snap("wed-2", "2026-03-04T07:00:00.000Z"),
  ];
  assert.deepEqual(kept(s, { daily: 2 }), ["tue", "wed-2"]);
  assert.deepEqual(kept(s, { daily: 3 }), ["mon-late", "tue", "wed-2"]);
});

test("keep-weekly buckets by ISO week: Sunday belongs to the week that began the Monday before", () => {
  const s = [
    snap("w09-mon", "2026-02-23T08:00:00.000Z"),
    snap("w09-sun", "2026-03-01T20:00:00.000Z"),
    snap("w10-mon", "2026-03-02T08:00:00.000Z"),
    snap("w10-wed", "2026-03-04T08:00:00.000Z"),
  ];
  assert.deepEqual(kept(s, { weekly: 2 }), ["w09-sun", "w10-wed"]);
  assert.deepEqual(kept(s, { weekly: 1 }), ["w10-wed"]);
});

test("keep-monthly and keep-yearly keep the newest snapshot of each month and year", () => {
  const s = series("2024-01-15T00:00:00.000Z", 20 * DAY, 40);
  const monthly = applyRetention(s, { monthly: 3 }).filter((d) => d.keep);
  assert.deepEqual(
    monthly.map((d) => d.time.slice(0, 7)),
    ["2026-01", "2026-02", "2026-03"],
  );
  const yearly = applyRetention(s, { yearly: 5 }).filter((d) => d.keep);
  assert.deepEqual(
    yearly.map((d) => d.time.slice(0, 4)),
    ["2024", "2025", "2026"],
  );
  // Each kept one is the newest of its year.
  for (const y of yearly) {
    const newest = s.filter((x) => x.time.startsWith(y.time.slice(0, 4))).at(-1);
    assert.equal(y.id, newest?.id);
  }
});

test("a snapshot kept by several rules lists every rule that keeps it", () => {
  const s = series("2026-03-01T00:00:00.000Z", DAY, 10);
  const d = applyRetention(s, { last: 1, daily: 3, monthly: 1 });
  assert.deepEqual(d.find((x) => x.id === "s09")?.reasons, ["last", "daily", "monthly"]);
  assert.deepEqual(d.find((x) => x.id === "s08")?.reasons, ["daily"]);
  assert.deepEqual(kept(s, { last: 1, daily: 3, monthly: 1 }), ["s07", "s08", "s09"]);
});

test("a tag filter considers only tagged snapshots and keeps every untagged one", () => {
  const s = [
    snap("h1", "2026-03-01T01:00:00.000Z", ["hourly"]),
    snap("m1", "2026-03-01T01:30:00.000Z", ["manual"]),
    snap("h2", "2026-03-01T02:00:00.000Z", ["hourly"]),
    snap("n1", "2026-03-01T02:30:00.000Z"),
    snap("h3", "2026-03-01T03:00:00.000Z", ["hourly", "daily"]),
  ];
  const d = applyRetention(s, { last: 1, tags: ["hourly"] });
  assert.deepEqual(
    d
      .filter((x) => x.keep)
      .map((x) => x.id)
      .sort(),
    ["h3", "m1", "n1"],
  );
  assert.deepEqual(d.find((x) => x.id === "m1")?.reasons, ["untagged"]);
  assert.equal(d.find((x) => x.id === "h1")?.keep, false);
});

test("retention applies per host and source: each group keeps its own N latest", () => {
  const other = "host-b\u0000node-0";
  const third = "host-a\u0000node-1";
  const s = [
    snap("a1", "2026-03-01T01:00:00.000Z"),
    snap("a2", "2026-03-01T02:00:00.000Z"),
    snap("b1", "2026-03-01T01:30:00.000Z", [], other),
    snap("b2", "2026-03-01T00:30:00.000Z", [], other),
    snap("c1", "2026-03-01T00:10:00.000Z", [], third),
  ];
  assert.deepEqual(kept(s, { last: 1 }), ["a2", "b1", "c1"]);
});

test("a policy with no rule above zero is refused rather than removing everything", () => {
  const s = series("2026-03-01T00:00:00.000Z", HOUR, 3);
  for (const p of [{}, { last: 0 }, { daily: 0, tags: ["hourly"] }])
    assert.throws(
      () => applyRetention(s, p),
      (err: unknown) => err instanceof RangeError && /--keep-/.test(err.message),
    );
});

test("snapshots at the same instant are ordered by id, so the decision does not depend on input order", () => {
  const s = [snap("b", "2026-03-01T00:00:00.000Z"), snap("a", "2026-03-01T00:00:00.000Z")];
  assert.deepEqual(kept(s, { last: 1 }), kept([...s].reverse(), { last: 1 }));
  assert.deepEqual(kept(s, { daily: 1 }), kept([...s].reverse(), { daily: 1 }));
});

test("isoWeek numbers weeks as ISO 8601 does at the turn of the year", () => {
  const cases: [string, string][] = [
    ["2026-01-01T00:00:00Z", "2026-W01"], // a Thursday: week 1 of its own year
    ["2025-12-29T00:00:00Z", "2026-W01"], // the Monday of that week, in the previous year
    ["2021-01-01T12:00:00Z", "2020-W53"], // a Friday: the last week of the previous year
    ["2021-01-03T23:59:59Z", "2020-W53"], // the Sunday ending that week
    ["2021-01-04T00:00:00Z", "2021-W01"], // the next Monday starts week 1
    ["2020-12-31T00:00:00Z", "2020-W53"], // a long year's 53rd week
    ["2024-12-30T00:00:00Z", "2025-W01"], // a Monday in December that belongs to the next year
    ["2027-01-01T00:00:00Z", "2026-W53"],
    ["2024-02-29T00:00:00Z", "2024-W09"], // a leap day
    ["2026-11-19T00:00:00Z", "2026-W47"],
  ];
  for (const [iso, week] of cases) assert.equal(isoWeek(new Date(iso)), week, iso);
});

test("isoWeek uses UTC, not the local time zone", () => {
  // 23:30 UTC on Sunday is Monday in UTC+1, but the week is the UTC one.
  assert.equal(isoWeek(new Date("2026-03-01T23:30:00Z")), "2026-W09");
  assert.equal(isoWeek(new Date("2026-03-02T00:00:00Z")), "2026-W10");
});

// Stored formats: packs, index objects, snapshot manifests, key files.

// scrypt at N = 1024: key files wrap and unwrap in about a millisecond.
const KDF = { N: 1024, r: 8, p: 1 };
// The associated data of a pack header and a snapshot (pack.ts, snapshot.ts): a forger
// holding the data key uses them to make objects that authenticate.
const HEADER_AAD = Buffer.from("chainvault/pack-header/v1");
const SNAPSHOT_AAD = Buffer.from("chainvault/snapshot/v1");
const INDEX_AAD = Buffer.from("chainvault/index/v1");

const key = randomBytes(32);

/** A pack of `count` blobs of different sizes, as stored bytes plus what went in. */
function buildPack(count: number): { bytes: Buffer; builder: PackBuilder; blobs: Buffer[] } {
  const b = new PackBuilder("ledger");
  const blobs: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const id = randomBytes(32);
    const blob = seal(key, randomBytes(100 + i * 37), id);
    blobs.push(blob);
    // Without a writer the builder keeps the blob in memory: nothing to wait for.
    void b.add(id, blob, 1000 + i, i % 2 === 0 ? FLAG_COMPRESSED : 0);
  }
  const { parts, sizeBytes } = b.finish(key);
  const bytes = Buffer.concat(parts);
  assert.equal(bytes.length, sizeBytes);
  return { bytes, builder: b, blobs };
}

test("a pack's header lists every blob with its id, offset, lengths and flags", () => {
  const { bytes, builder, blobs } = buildPack(5);
  assert.ok(bytes.subarray(-4).equals(PACK_MAGIC));
  const entries = parsePack(key, bytes);
  assert.ok(Array.isArray(entries), String(entries));
  assert.equal(entries.length, 5);
  let offset = 0;
  entries.forEach((e, i) => {
    const built = builder.entries[i]!;
    assert.ok(e.id.equals(built.id));
    assert.equal(e.offset, offset);
    assert.equal(e.length, blobs[i]!.length);
    assert.equal(e.rawLength, 1000 + i);
    assert.equal(e.flags, i % 2 === 0 ? FLAG_COMPRESSED : 0);
    // Each blob is where the header says, and opens with its id as associated data.
    const blob = bytes.subarray(e.offset, e.offset + e.length);
    assert.ok(blob.equals(blobs[i]!));
    assert.ok(open(key, blob, e.id));
    offset += e.length;
  });
});

test("an empty pack round-trips to no entries", () => {
  assert.deepEqual(parsePack(key, buildPack(0).bytes), []);
});

test("a pack shorter than its trailer is reported as such", () => {
  assert.equal(parsePack(key, Buffer.from("CVP1")), "shorter than its trailer");
});

test("a pack with a damaged magic is reported", () => {
  const { bytes } = buildPack(2);
  bytes[bytes.length - 1]! ^= 0x01;
  assert.equal(parsePack(key, bytes), "trailer magic is wrong");
});

test("a pack whose header length points before its start is reported", () => {
  const { bytes } = buildPack(2);
  bytes.writeUInt32LE(bytes.length, bytes.length - 8);
  assert.equal(parsePack(key, bytes), "header length runs past the start");
});

test("a pack whose header has a flipped bit, or is read with another key, does not authenticate", () => {
  const { bytes } = buildPack(3);
  const hlen = bytes.readUInt32LE(bytes.length - 8);
  const flipped = Buffer.from(bytes);
  flipped[bytes.length - 8 - Math.floor(hlen / 2)]! ^= 0x10;
  assert.equal(parsePack(key, flipped), "header does not authenticate");
  assert.equal(parsePack(randomBytes(32), bytes), "header does not authenticate");
  // A damaged header length moves the header's start: that too fails to authenticate.
  const shifted = Buffer.from(bytes);
  shifted.writeUInt32LE(hlen - 1, bytes.length - 8);
  assert.equal(parsePack(key, shifted), "header does not authenticate");
});

test("a pack that lost a blob is reported by the offsets, although its header authenticates", () => {
  const { bytes, blobs } = buildPack(3);
  const cut = Buffer.concat([bytes.subarray(blobs[0]!.length)]);
  assert.equal(
    parsePack(key, cut),
    `blobs end at ${blobs.reduce((s, b) => s + b.length, 0)} but the header starts at ${
      blobs[1]!.length + blobs[2]!.length
    }`,
  );
});

test("a forged header with a partial entry is reported", () => {
  const header = seal(key, Buffer.alloc(41 + 7), HEADER_AAD);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(header.length, 0);
  PACK_MAGIC.copy(trailer, 4);
  assert.equal(parsePack(key, Buffer.concat([header, trailer])), "header has a partial entry");
});

test("pack object names carry the class and a two-character fan-out, and parse back", () => {
  const name = "ab".repeat(32);
  const obj = packObjectName("state", name);
  assert.equal(obj, `data/state/ab/${name}`);
  assert.deepEqual(parsePackObjectName(obj), { dataClass: "state", name });
  assert.equal(parsePackObjectName(`data/state/cd/${name}`), undefined, "a wrong fan-out is not a pack");
  assert.equal(parsePackObjectName(`data/state/ab/${name}.tmp-1`), undefined);
  assert.equal(parsePackObjectName(`data/State/ab/${name}`), undefined);
  assert.equal(parsePackObjectName(`index/${name}`), undefined);
});

function samplePacks(): PackInfo[] {
  return ["ledger", "state", "keys"].map((dataClass, pi) => ({
    name: randomBytes(32).toString("hex"),
    dataClass,
    sizeBytes: 10_000 * (pi + 1),
    entries: Array.from({ length: pi + 1 }, (_, i) => ({
      id: randomBytes(32),
      offset: i * 500,
      length: 500,
      rawLength: 2 ** 31 + i,
      flags: i % 2,
    })),
  }));
}

test("an index object round-trips every pack and entry exactly", () => {
  const packs = samplePacks();
  assert.deepEqual(decodeIndex(key, encodeIndex(key, packs)), packs);
  assert.deepEqual(decodeIndex(key, encodeIndex(key, [])), []);
});

test("a damaged index object, or one read with another key, does not authenticate", () => {
  const sealed = encodeIndex(key, samplePacks());
  for (const at of [0, 13, Math.floor(sealed.length / 2), sealed.length - 1]) {
    const d = Buffer.from(sealed);
    d[at]! ^= 0x80;
    assert.equal(decodeIndex(key, d), "does not authenticate", `bit flipped at ${at}`);
  }
  assert.equal(decodeIndex(key, sealed.subarray(0, sealed.length - 1)), "does not authenticate");
  assert.equal(decodeIndex(randomBytes(32), sealed), "does not authenticate");
});

test("an index whose plaintext is truncated or overlong is reported, not misread", () => {
  const plain = open(key, encodeIndex(key, samplePacks()), INDEX_AAD)!;
  assert.equal(
    decodeIndex(key, seal(key, plain.subarray(0, plain.length - 3), INDEX_AAD)),
    "is truncated inside an entry",
  );
  assert.equal(
    decodeIndex(key, seal(key, Buffer.concat([plain, Buffer.alloc(5)]), INDEX_AAD)),
    "has 5 trailing bytes",
  );
});

const master = newMasterKey();
const signKey = signingKeyOf(master.signSeed);
const signPub = publicKeyBytes(signKey);

function manifest(): Manifest {
  return {
    version: 1,
    time: "2026-03-01T12:00:00.000Z",
    host: "host-a",
    sourceId: "node-0",
    source: "/var/lib/node-0",
    tags: ["daily"],
    anchor: { height: 1200, headHash: "aa".repeat(32), stateRoot: "bb".repeat(32) },
    components: [
      {
        name: "ledger",
        dataClass: "ledger",
        sizeBytes: 3,
        files: [
          { path: "ledger", type: "dir", mode: 0o755, mtimeMs: 1, sizeBytes: 0 },
          {
            path: "ledger/seg-00000000.dat",
            type: "file",
            mode: 0o644,
            mtimeMs: 2.5,
            sizeBytes: 3,
            chunks: ["cd".repeat(32)],
          },
        ],
      },
    ],
  };
}

test("a snapshot round-trips its manifest and is named by the sha256 of its bytes", () => {
  const m = manifest();
  const { id, bytes } = encodeSnapshot(master.dataKey, signKey, m);
  assert.equal(id, createHash("sha256").update(bytes).digest("hex"));
  assert.deepEqual(decodeSnapshot(master.dataKey, signPub, id, bytes), { manifest: m });
});

test("a snapshot with any flipped bit is refused: its name no longer matches", () => {
  const { id, bytes } = encodeSnapshot(master.dataKey, signKey, manifest());
  for (const at of [0, 12, Math.floor(bytes.length / 2), bytes.length - 1]) {
    const d = Buffer.from(bytes);
    d[at]! ^= 0x04;
    assert.deepEqual(decodeSnapshot(master.dataKey, signPub, id, d), {
      problem: "its content does not match its name (sha256)",
    });
  }
});

test("a snapshot renamed to match damaged bytes still fails authentication", () => {
  const { bytes } = encodeSnapshot(master.dataKey, signKey, manifest());
  const d = Buffer.from(bytes);
  d[20]! ^= 0x01;
  const id = createHash("sha256").update(d).digest("hex");
  assert.deepEqual(decodeSnapshot(master.dataKey, signPub, id, d), {
    problem: "it does not authenticate (AES-GCM tag)",
  });
});

test("a manifest edited and re-sealed with the data key is refused: its signature does not verify", () => {
  const { bytes } = encodeSnapshot(master.dataKey, signKey, manifest());
  const obj = JSON.parse(open(master.dataKey, bytes, SNAPSHOT_AAD)!.toString("utf8")) as {
    manifest: Manifest;
    signature: string;
  };
  // Someone with the data key (not the signing seed) swaps a chunk and raises the anchor.
  obj.manifest.anchor = { ...obj.manifest.anchor, height: 1300 };
  obj.manifest.components[0]!.files[1]!.chunks = ["ef".repeat(32)];
  const forged = seal(master.dataKey, Buffer.from(JSON.stringify(obj)), SNAPSHOT_AAD);
  const id = createHash("sha256").update(forged).digest("hex");
  assert.deepEqual(decodeSnapshot(master.dataKey, signPub, id, forged), {
    problem: "its manifest signature does not verify",
  });
});

test("a snapshot signed by another repository's key does not verify", () => {
  const other = signingKeyOf(randomBytes(32));
  const { id, bytes } = encodeSnapshot(master.dataKey, other, manifest());
  assert.deepEqual(decodeSnapshot(master.dataKey, signPub, id, bytes), {
    problem: "its manifest signature does not verify",
  });
});

test("a sealed snapshot that is not valid JSON or not a manifest is reported", () => {
  const junk = seal(master.dataKey, Buffer.from("{not json"), SNAPSHOT_AAD);
  assert.deepEqual(
    decodeSnapshot(master.dataKey, signPub, createHash("sha256").update(junk).digest("hex"), junk),
    {
      problem: "its manifest is not valid JSON",
    },
  );
  const bad = seal(
    master.dataKey,
    Buffer.from(JSON.stringify({ manifest: { ...manifest(), version: 2 }, signature: "" })),
    SNAPSHOT_AAD,
  );
  const r = decodeSnapshot(master.dataKey, signPub, createHash("sha256").update(bad).digest("hex"), bad);
  assert.ok("problem" in r && r.problem.startsWith("its manifest is malformed"), JSON.stringify(r));
});

test("a key file unwraps to the same master key with its password", async () => {
  const kf = await wrapMasterKey(master, "pässword", "initial", KDF);
  const decoded = decodeKeyFile(encodeKeyFile(kf));
  assert.deepEqual(decoded, kf);
  assert.deepEqual(await unwrapMasterKey(decoded!, "pässword"), master);
  // The password is normalised (NFC): the decomposed spelling opens it too.
  assert.deepEqual(await unwrapMasterKey(decoded!, "pa\u0308ssword"), master);
  assert.equal(encodeKeyFile(kf).includes("pässword"), false, "the password is not stored");
});

test("a key file does not unwrap with a wrong password", async () => {
  const kf = await wrapMasterKey(master, "right", "initial", KDF);
  assert.equal(await unwrapMasterKey(kf, "wrong"), undefined);
  assert.equal(await unwrapMasterKey(kf, "right "), undefined);
  assert.equal(await unwrapMasterKey(kf, ""), undefined);
});

test("a key file with a damaged byte fails its checksum and decodes to nothing", async () => {
  const bytes = encodeKeyFile(await wrapMasterKey(master, "pw", "initial", KDF));
  for (const at of [0, 40, Math.floor(bytes.length / 2), bytes.length - 2]) {
    const d = Buffer.from(bytes);
    d[at]! ^= 0x02;
    assert.equal(decodeKeyFile(d), undefined, `byte ${at} damaged`);
  }
  assert.equal(decodeKeyFile(bytes.subarray(0, bytes.length - 1)), undefined, "truncated");
  assert.equal(decodeKeyFile(Buffer.alloc(0)), undefined, "empty");
});

test("a key file edited with its checksum recomputed decodes but does not unwrap", async () => {
  const kf = await wrapMasterKey(master, "pw", "initial", KDF);
  const wrapped = Buffer.from(kf.wrapped, "base64");
  wrapped[wrapped.length - 1]! ^= 0x01;
  const edited = { ...kf, wrapped: wrapped.toString("base64") };
  const decoded = decodeKeyFile(encodeKeyFile(edited));
  assert.ok(decoded);
  assert.equal(await unwrapMasterKey(decoded, "pw"), undefined);
  const resalted = decodeKeyFile(
    encodeKeyFile({ ...kf, kdf: { ...kf.kdf, salt: randomBytes(16).toString("base64") } }),
  );
  assert.ok(resalted);
  assert.equal(await unwrapMasterKey(resalted, "pw"), undefined);
});

test("a key file of the wrong shape is refused even with a valid checksum", () => {
  const body = JSON.stringify({ version: 1, id: "not-hex" });
  const bytes = Buffer.from(`${body}\n${createHash("sha256").update(body).digest("hex")}\n`);
  assert.equal(decodeKeyFile(bytes), undefined);
});

// Restore path checks.

const SNAP = "ab".repeat(32);

function node(path: string, type: FileNode["type"] = "file", target?: string): FileNode {
  return {
    path,
    type,
    mode: type === "dir" ? 0o755 : 0o644,
    mtimeMs: 0,
    sizeBytes: 0,
    ...(target !== undefined ? { target } : {}),
  };
}

function rejectsUnsafe(fn: () => void, path: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof VaultError);
    assert.equal(err.code, VaultErrorCode.UnsafePath);
    assert.equal((err.detail as { path: string }).path, path);
    assert.ok(err.message.includes(SNAP), "the message names the snapshot");
    return true;
  });
}

test("restore accepts a tree of plain relative paths", () => {
  assert.doesNotThrow(() =>
    checkTree(
      [
        node("ledger", "dir"),
        node("ledger/seg-00000000.dat"),
        node("ledger/.hidden"),
        node("ledger/a..b"),
        node("ledger/current", "symlink", "seg-00000000.dat"),
        node("node.json"),
      ],
      SNAP,
    ),
  );
});

test("restore refuses paths that climb out with ../ segments", () => {
  for (const p of ["..", "../etc/passwd", "ledger/../../x", "a/.."])
    rejectsUnsafe(() => assertSafePath(p, SNAP), p);
});

test("restore refuses absolute paths", () => {
  for (const p of ["/etc/passwd", "/"]) rejectsUnsafe(() => assertSafePath(p, SNAP), p);
});

test("restore refuses empty paths, empty segments and dot segments", () => {
  for (const p of ["", "a//b", "a/", "./a", "a/./b", "."]) rejectsUnsafe(() => assertSafePath(p, SNAP), p);
});

test("restore refuses paths with a backslash or a NUL byte", () => {
  for (const p of ["..\\..\\x", "a\\b", "a\0b", "ledger/\0"]) rejectsUnsafe(() => assertSafePath(p, SNAP), p);
});

test("restore refuses a tree that lists a path twice", () => {
  rejectsUnsafe(() => checkTree([node("a", "dir"), node("a/f"), node("a/f", "symlink", "g")], SNAP), "a/f");
});

test("restore refuses an entry beneath a symlink of the same tree", () => {
  // A writer would follow `a` to wherever it points and write `a/passwd` there.
  rejectsUnsafe(() => checkTree([node("a", "symlink", "/etc"), node("a/passwd")], SNAP), "a/passwd");
  rejectsUnsafe(
    () => checkTree([node("d", "dir"), node("d/l", "symlink", ".."), node("d/l/x", "dir")], SNAP),
    "d/l/x",
  );
});

test("restore refuses an entry beneath a file of the same tree", () => {
  rejectsUnsafe(() => checkTree([node("f"), node("f/g")], SNAP), "f/g");
});

test("restore checks every path of the tree, not only the first", () => {
  rejectsUnsafe(() => checkTree([node("ok"), node("also-ok"), node("../bad")], SNAP), "../bad");
});

test("a symlink whose target resolves inside the restore root is allowed", () => {
  assert.equal(symlinkStaysInside("current", "seg-1.dat"), true);
  assert.equal(symlinkStaysInside("a/b/link", "../c"), true);
  assert.equal(symlinkStaysInside("a/b/link", "../../c"), true);
  assert.equal(symlinkStaysInside("a/link", ".."), true);
  assert.equal(symlinkStaysInside("a/link", "./b/./c"), true);
});

test("a symlink whose target leaves the restore root is refused", () => {
  assert.equal(symlinkStaysInside("link", "/etc/passwd"), false);
  assert.equal(symlinkStaysInside("link", ".."), false);
  assert.equal(symlinkStaysInside("link", "../x"), false);
  assert.equal(symlinkStaysInside("a/b/link", "../../../x"), false);
  assert.equal(symlinkStaysInside("a/link", "b/../../../x"), false);
  assert.equal(symlinkStaysInside("a/link", "x\0"), false);
});

test("a symlink that climbs through another name of the tree is refused, since that name may itself be a link", () => {
  // `d/up -> ..` stays inside, but `d/esc -> up/../../outside` then resolves through it to
  // the parent of the restore root, although it looks inside when normalised as text.
  assert.equal(symlinkStaysInside("d/up", ".."), true);
  assert.equal(symlinkStaysInside("d/esc", "up/../../outside"), false);
  assert.equal(symlinkStaysInside("d/esc", "up/.."), false);
});

test("a symlink with an empty target is refused", () => {
  assert.equal(symlinkStaysInside("link", ""), false);
});

test("copyInto copies all of a buffer into a shared one at an offset, and an empty copy does nothing", () => {
  const src = Buffer.from(new SharedArrayBuffer(5000));
  src.set(randomBytes(5000));
  const dst = Buffer.from(new SharedArrayBuffer(6000)).fill(0xaa);
  assert.equal(copyInto(dst, 700, src.subarray(100, 4100)), 4000);
  assert.ok(dst.subarray(700, 4700).equals(src.subarray(100, 4100)));
  // Nothing outside the range is touched.
  assert.ok(dst.subarray(0, 700).every((b) => b === 0xaa));
  assert.ok(dst.subarray(4700).every((b) => b === 0xaa));
  assert.equal(copyInto(dst, 6000, Buffer.alloc(0)), 0);
  assert.throws(() => copyInto(dst, 5000, src), RangeError);
});
