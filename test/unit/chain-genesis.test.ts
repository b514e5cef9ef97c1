// Goal: prove Genesis.parse derives a deterministic chain identity from a valid document and refuses invalid ones with GENESIS_INVALID naming the field; method: parse a fixed document, perturb one field at a time, and feed malformed variants.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Genesis, type GenesisDoc, GenesisError, GenesisErrorCode } from "../../src/chain/genesis.js";
import { accountLeaf, LtHash } from "../../src/chain/lthash.js";

const KEY_V1 = "11".repeat(32);
const KEY_V2 = "22".repeat(32);
const ACCT_A = "aa".repeat(32);
const ACCT_B = "bb".repeat(32);
// sha256 of validDoc()'s canonical encoding, recorded when this test was written and cross-checked by the
// independent encoder in "the genesis hash is sha256 of the documented canonical encoding".
const GOLDEN_HASH_HEX = "4e61fb7aafc18d54da149c45e717e1efec2cc43d9926c3eff9a3056c2526ccbf";

function validDoc(): GenesisDoc {
  return {
    chainId: "chainvault-test",
    genesisTimeMs: 1_700_000_000_000,
    blockTimeMs: 1000,
    outOfTurnDelayMs: 500,
    maxTxsPerBlock: 500,
    validators: [
      { name: "v1", publicKey: KEY_V1 },
      { name: "v2", publicKey: KEY_V2 },
    ],
    balances: [
      { account: ACCT_A, amount: "1000" },
      { account: ACCT_B, amount: "25" },
    ],
  };
}

/** Asserts that parsing `doc` throws GENESIS_INVALID with a message matching `pattern`. */
function assertInvalid(doc: unknown, pattern: RegExp): void {
  assert.throws(
    () => Genesis.parse(doc),
    (err: unknown) => {
      assert.ok(err instanceof GenesisError, `expected a GenesisError, got ${String(err)}`);
      assert.equal(err.code, GenesisErrorCode.Invalid);
      assert.equal(err.code, "GENESIS_INVALID");
      assert.match(err.message, pattern);
      return true;
    },
  );
}

test("Genesis.parse derives validators, accounts and the state root from a valid document", () => {
  const g = Genesis.parse(validDoc());
  assert.equal(g.validatorCount, 2);
  assert.deepEqual(g.validatorKeys, [Buffer.from(KEY_V1, "hex"), Buffer.from(KEY_V2, "hex")]);
  assert.deepEqual(g.initialAccounts.get(ACCT_A), { balance: 1000n, nonce: 0n });
  assert.deepEqual(g.initialAccounts.get(ACCT_B), { balance: 25n, nonce: 0n });
  assert.equal(g.hash.length, 32);

  const expected = new LtHash();
  expected.add(accountLeaf(Buffer.from(ACCT_B, "hex"), { balance: 25n, nonce: 0n }));
  expected.add(accountLeaf(Buffer.from(ACCT_A, "hex"), { balance: 1000n, nonce: 0n }));
  assert.deepEqual(g.stateRoot, expected.root());
});

test("the genesis hash is deterministic and ignores JSON key order", () => {
  const first = Genesis.parse(validDoc()).hash;
  assert.deepEqual(Genesis.parse(validDoc()).hash, first);
  const reordered = JSON.parse(JSON.stringify(Object.fromEntries(Object.entries(validDoc()).reverse())));
  assert.deepEqual(Genesis.parse(reordered).hash, first);
  // Golden value: the hash names the chain, so any change to the encoding must be deliberate.
  assert.equal(first.toString("hex"), GOLDEN_HASH_HEX);
});

test("the genesis hash is sha256 of the documented canonical encoding", () => {
  const doc = validDoc();
  const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const u64 = (n: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(n);
    return b;
  };
  const str16 = (s: string) => Buffer.concat([u16(Buffer.byteLength(s)), Buffer.from(s)]);
  const encoding = Buffer.concat([
    str16("chainvault/genesis/v1"),
    str16(doc.chainId),
    u64(BigInt(doc.genesisTimeMs)),
    u32(doc.blockTimeMs),
    u32(doc.outOfTurnDelayMs),
    u32(doc.maxTxsPerBlock),
    u32(doc.validators.length),
    ...doc.validators.flatMap((v) => [str16(v.name), Buffer.from(v.publicKey, "hex")]),
    u32(doc.balances.length),
    ...doc.balances.flatMap((b) => [Buffer.from(b.account, "hex"), u64(BigInt(b.amount))]),
  ]);
  assert.deepEqual(Genesis.parse(doc).hash, createHash("sha256").update(encoding).digest());
});

test("changing any field of the document changes the genesis hash", () => {
  const base = Genesis.parse(validDoc()).hash;
  const variants: Array<[string, (d: GenesisDoc) => void]> = [
    ["chainId", (d) => (d.chainId = "chainvault-other")],
    ["genesisTimeMs", (d) => (d.genesisTimeMs += 1)],
    ["blockTimeMs", (d) => (d.blockTimeMs += 1)],
    ["outOfTurnDelayMs", (d) => (d.outOfTurnDelayMs += 1)],
    ["maxTxsPerBlock", (d) => (d.maxTxsPerBlock += 1)],
    ["validator name", (d) => (d.validators[0]!.name = "v9")],
    ["validator key", (d) => (d.validators[1]!.publicKey = "33".repeat(32))],
    ["validator order", (d) => d.validators.reverse()],
    ["balance account", (d) => (d.balances[0]!.account = "cc".repeat(32))],
    ["balance amount", (d) => (d.balances[1]!.amount = "26")],
    ["balance removed", (d) => d.balances.pop()],
  ];
  for (const [what, mutate] of variants) {
    const doc = validDoc();
    mutate(doc);
    assert.notDeepEqual(Genesis.parse(doc).hash, base, `hash ignores ${what}`);
  }
});

test("Genesis.parse refuses bad hex keys with GENESIS_INVALID naming the field", () => {
  const cases: Array<[string, (d: GenesisDoc) => void, RegExp]> = [
    ["non-hex", (d) => (d.validators[0]!.publicKey = "zz".repeat(32)), /validators\.0\.publicKey/],
    ["too short", (d) => (d.validators[1]!.publicKey = "11".repeat(31)), /validators\.1\.publicKey/],
    ["uppercase", (d) => (d.validators[0]!.publicKey = "AB".repeat(32)), /validators\.0\.publicKey/],
    ["account", (d) => (d.balances[1]!.account = `0x${"aa".repeat(31)}`), /balances\.1\.account/],
  ];
  for (const [what, mutate, pattern] of cases) {
    const doc = validDoc();
    mutate(doc);
    assertInvalid(doc, pattern);
    assert.doesNotThrow(() => Genesis.parse(validDoc()), what);
  }
});

test("Genesis.parse refuses a document missing any required field, naming it", () => {
  for (const field of Object.keys(validDoc()) as Array<keyof GenesisDoc>) {
    const doc: Partial<GenesisDoc> = validDoc();
    delete doc[field];
    assertInvalid(doc, new RegExp(`^Invalid genesis in genesis: ${field}: `));
  }
});

test("Genesis.parse refuses out-of-range values, naming the field", () => {
  assertInvalid({ ...validDoc(), validators: [] }, /validators/);
  assertInvalid({ ...validDoc(), blockTimeMs: 5 }, /blockTimeMs/);
  assertInvalid({ ...validDoc(), genesisTimeMs: -1 }, /genesisTimeMs/);
  assertInvalid({ ...validDoc(), maxTxsPerBlock: 1.5 }, /maxTxsPerBlock/);
  assertInvalid({ ...validDoc(), chainId: "" }, /chainId/);
  assertInvalid({ ...validDoc(), balances: [{ account: ACCT_A, amount: "-5" }] }, /balances\.0\.amount/);
  assertInvalid({ ...validDoc(), balances: [{ account: ACCT_A, amount: 5 }] }, /balances\.0\.amount/);
});

test("Genesis.parse refuses a non-object document and names where it came from", () => {
  assert.throws(
    () => Genesis.parse(null, "node1/genesis.json"),
    (err: unknown) =>
      err instanceof GenesisError &&
      err.code === GenesisErrorCode.Invalid &&
      err.message.startsWith("Invalid genesis in node1/genesis.json: (root): "),
  );
});

test("Genesis.parse refuses an account listed twice, naming the account", () => {
  const doc = validDoc();
  doc.balances.push({ account: ACCT_A, amount: "1" });
  assertInvalid(doc, new RegExp(`account ${ACCT_A} appears twice`));
});

test("Genesis.parse refuses a balance that does not fit in 64 bits with GENESIS_INVALID", () => {
  assertInvalid(
    { ...validDoc(), balances: [{ account: ACCT_A, amount: (2n ** 64n).toString() }] },
    /balances\.0\.amount/,
  );
});

test("a balance of 2^64 - 1 is accepted", () => {
  const g = Genesis.parse({
    ...validDoc(),
    balances: [{ account: ACCT_A, amount: (2n ** 64n - 1n).toString() }],
  });
  assert.equal(g.initialAccounts.get(ACCT_A)?.balance, 2n ** 64n - 1n);
});

test("Genesis.load names the path when the file cannot be read", () => {
  const path = join(tmpdir(), `chainvault-missing-${process.pid}`, "genesis.json");
  assert.throws(
    () => Genesis.load(path),
    (err: unknown) =>
      err instanceof GenesisError && err.code === GenesisErrorCode.Invalid && err.message.includes(path),
  );
});
