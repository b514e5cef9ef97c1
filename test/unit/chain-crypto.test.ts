// Goal: prove the ed25519 and hashing helpers keep keys intact and never accept a bad signature; method: round-trip real keys through PEM and compare the synchronous and thread-pool verifiers on good, tampered and malformed inputs.
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync } from "node:crypto";
import { test } from "node:test";
import {
  exportPrivateKeyPem,
  fromHex,
  generateKeyPair,
  importPrivateKeyPem,
  rawPublicKey,
  sha256,
  signMessage,
  verifyAsync,
  verifySync,
} from "../../src/chain/crypto.js";

const alice = generateKeyPair();
const bob = generateKeyPair();
const message = Buffer.from("chainvault crypto test message");
const signature = signMessage(alice.privateKey, message);

test("a private key exported to PEM and imported back has the same public key and signs for it", () => {
  const pem = exportPrivateKeyPem(alice.privateKey);
  assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
  const imported = importPrivateKeyPem(pem);
  assert.equal(imported.publicKey.length, 32);
  assert.deepEqual(imported.publicKey, alice.publicKey);
  assert.notDeepEqual(imported.publicKey, bob.publicKey);
  const sig = signMessage(imported.privateKey, message);
  assert.equal(verifySync(alice.publicKey, message, sig), true);
});

test("rawPublicKey gives the same 32 bytes from the private key as generateKeyPair reports", () => {
  assert.deepEqual(rawPublicKey(alice.privateKey), alice.publicKey);
});

test("importPrivateKeyPem refuses a key that is not ed25519 with a TypeError", () => {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const pem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  assert.throws(() => importPrivateKeyPem(pem), { name: "TypeError", message: /got ec/ });
});

test("verifyAsync agrees with verifySync on good and bad signatures", async () => {
  const tamperedSig = Buffer.from(signature);
  tamperedSig[10]! ^= 0x01;
  const cases: Array<[string, Buffer, Buffer, Buffer, boolean]> = [
    ["good", alice.publicKey, message, signature, true],
    ["wrong key", bob.publicKey, message, signature, false],
    ["tampered message", alice.publicKey, Buffer.from("chainvault crypto test messagE"), signature, false],
    ["tampered signature", alice.publicKey, message, tamperedSig, false],
  ];
  for (const [what, key, msg, sig, expected] of cases) {
    assert.equal(verifySync(key, msg, sig), expected, `verifySync: ${what}`);
    assert.equal(await verifyAsync(key, msg, sig), expected, `verifyAsync: ${what}`);
  }
});

test("a signature or public key of the wrong length verifies as false instead of throwing", async () => {
  for (const sig of [
    Buffer.alloc(0),
    signature.subarray(0, 63),
    Buffer.concat([signature, Buffer.from([0])]),
  ]) {
    assert.equal(verifySync(alice.publicKey, message, sig), false, `${sig.length}-byte signature`);
    assert.equal(await verifyAsync(alice.publicKey, message, sig), false, `${sig.length}-byte signature`);
  }
  const longKey = Buffer.concat([alice.publicKey, Buffer.from([0])]);
  assert.equal(verifySync(longKey, message, signature), false);
  assert.equal(await verifyAsync(longKey, message, signature), false);
});

test("a 32-byte public key that is not a canonical point encoding verifies as false instead of throwing", async () => {
  // All 0xff encodes y = 2^255 - 1, above the field prime 2^255 - 19, so it is not a canonical encoding.
  const notAPoint = Buffer.alloc(32, 0xff);
  assert.equal(verifySync(notAPoint, message, signature), false);
  assert.equal(await verifyAsync(notAPoint, message, signature), false);
});

test("sha256 of several parts equals sha256 of their concatenation", () => {
  const parts = [Buffer.from("chain"), Buffer.alloc(0), Buffer.from("vault")];
  const expected = createHash("sha256").update("chainvault").digest();
  assert.deepEqual(sha256(...parts), expected);
  assert.equal(sha256().toString("hex"), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
});

test("fromHex decodes exact-length hex and refuses other lengths or characters, naming the value", () => {
  assert.deepEqual(fromHex("00ff", 2, "probe"), Buffer.from([0x00, 0xff]));
  assert.throws(() => fromHex("00f", 2, "probe key"), {
    name: "TypeError",
    message: /Invalid probe key: expected 4 hex/,
  });
  assert.throws(() => fromHex("00ff00", 2, "probe"), TypeError);
  assert.throws(() => fromHex("00fg", 2, "probe"), TypeError);
});
