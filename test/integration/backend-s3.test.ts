// Goal: prove S3Backend meets the Backend contract, takes its settings from options over the AWS_* environment, and fails with messages that say what to check and never carry a secret; method: the shared conformance suite and S3-specific cases against s3rver, a real S3 API server on 127.0.0.1 with a temp directory, plus a closed loopback port for an unreachable endpoint.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, describe, test } from "node:test";
import type { Backend } from "../../src/vault/backend.js";
import { parseS3Location, S3Backend, type S3BackendOptions } from "../../src/vault/backends/s3.js";
import { VaultError, VaultErrorCode } from "../../src/vault/errors.js";
import { runBackendConformance } from "./_backend-conformance.js";
import { type S3TestServer, startS3Server } from "./_s3-server.js";

// Distinctive values that must never appear in an error message.
const SECRET = "sEcReT-9f3a7c1e-must-not-leak";
const WRONG_KEY_ID = "AKIAWRONGKEYID0000";

let s3: S3TestServer;
let nextPrefix = 0;

before(async () => {
  s3 = await startS3Server();
});
after(() => s3.close());

/** A backend on its own fresh prefix of the test bucket, so tests share the server but no objects. */
function backendFor(opts: S3BackendOptions = {}): S3Backend {
  nextPrefix++;
  return new S3Backend(`s3://${s3.bucket}/repo-${nextPrefix}`, {
    endpoint: s3.endpoint,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    env: {},
    ...opts,
  });
}

/** A loopback port with nothing listening: bound, read, then closed again. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
  return address.port;
}

/** Asserts that every operation of `b` rejects with BackendFailed and returns the messages. */
async function failuresOf(b: Backend): Promise<string[]> {
  const messages: string[] = [];
  const check = (err: unknown) => {
    assert.ok(err instanceof VaultError, `expected a VaultError, got ${String(err)}`);
    assert.equal(err.code, VaultErrorCode.BackendFailed);
    messages.push(err.message, JSON.stringify(err.detail));
    return true;
  };
  await assert.rejects(b.put("config", Uint8Array.of(1)), check);
  await assert.rejects(b.get("config"), check);
  await assert.rejects(b.getRange("config", 0, 1), check);
  await assert.rejects(b.stat("config"), check);
  await assert.rejects(b.list("snapshots/"), check);
  await assert.rejects(b.delete("config"), check);
  return messages;
}

runBackendConformance("S3Backend on s3rver", async () => ({
  backend: backendFor(),
  // Each fixture has its own prefix; the bucket goes with the server's temp directory.
  cleanup: async () => {},
}));

describe("S3Backend", () => {
  test("an unreachable endpoint fails every operation with BackendFailed naming the endpoint, without the secret key", async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const b = backendFor({ endpoint, accessKeyId: WRONG_KEY_ID, secretAccessKey: SECRET });
    try {
      for (const m of await failuresOf(b)) {
        assert.ok(m.includes(endpoint), `no endpoint in: ${m}`);
        assert.ok(!m.includes(SECRET), `secret key in: ${m}`);
        assert.ok(!m.includes(WRONG_KEY_ID), `access key id in: ${m}`);
      }
      await assert.rejects(b.get("config"), /ECONNREFUSED.*check that it is reachable/);
    } finally {
      await b.close();
    }
  });

  test("an access key the server does not know fails with BackendFailed naming the bucket and the credentials to check, without the secret key", async () => {
    // s3rver refuses an unknown access key id but does not verify SigV4 signatures, so a wrong
    // secret key with a known id would be accepted: the unknown id stands for wrong credentials.
    const b = backendFor({ accessKeyId: WRONG_KEY_ID, secretAccessKey: SECRET });
    try {
      for (const m of await failuresOf(b)) {
        assert.ok(m.includes(s3.bucket), `no bucket in: ${m}`);
        assert.ok(!m.includes(SECRET), `secret key in: ${m}`);
        assert.ok(!m.includes(WRONG_KEY_ID), `access key id in: ${m}`);
      }
      await assert.rejects(
        b.get("config"),
        /access to bucket chainvault-test was denied.*check the credentials/,
      );
    } finally {
      await b.close();
    }
  });

  test("a bucket that does not exist fails with BackendFailed saying so", async () => {
    const b = new S3Backend("s3://no-such-bucket/repo", {
      endpoint: s3.endpoint,
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
      env: {},
    });
    try {
      const check = (err: unknown) => {
        assert.ok(err instanceof VaultError);
        assert.equal(err.code, VaultErrorCode.BackendFailed);
        assert.match(err.message, /bucket no-such-bucket does not exist at http:\/\/127\.0\.0\.1:\d+/);
        return true;
      };
      await assert.rejects(b.put("config", Uint8Array.of(1)), check);
      await assert.rejects(b.get("config"), check);
      await assert.rejects(b.list(""), check);
    } finally {
      await b.close();
    }
  });

  test("the AWS_* environment variables configure endpoint, region and credentials, with path-style URLs", async () => {
    // Path style is what makes this work: `chainvault-test.127.0.0.1` does not resolve.
    const b = new S3Backend(`s3://${s3.bucket}/from-env`, {
      env: {
        AWS_ENDPOINT_URL_S3: s3.endpoint,
        AWS_DEFAULT_REGION: "eu-west-1",
        AWS_ACCESS_KEY_ID: s3.accessKeyId,
        AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
      },
    });
    try {
      assert.equal(b.endpoint, s3.endpoint);
      await b.put("config", Uint8Array.of(7));
      assert.deepEqual(await b.get("config"), Buffer.of(7));
    } finally {
      await b.close();
    }
  });

  test("constructor options override the AWS_* environment variables", async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const b = new S3Backend(`s3://${s3.bucket}/override`, {
      endpoint: s3.endpoint,
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
      env: {
        AWS_ENDPOINT_URL_S3: dead,
        AWS_ENDPOINT_URL: dead,
        AWS_ACCESS_KEY_ID: WRONG_KEY_ID,
        AWS_SECRET_ACCESS_KEY: SECRET,
        AWS_SESSION_TOKEN: "token-from-env",
      },
    });
    try {
      await b.put("config", Uint8Array.of(8));
      assert.deepEqual(await b.get("config"), Buffer.of(8));
    } finally {
      await b.close();
    }
  });

  test("the location names bucket and prefix but no endpoint or credential", () => {
    const b = backendFor({ accessKeyId: WRONG_KEY_ID, secretAccessKey: SECRET });
    assert.match(b.location, /^s3:\/\/chainvault-test\/repo-\d+$/);
    return b.close();
  });

  test("parseS3Location accepts s3://bucket and s3://bucket/prefix and normalises trailing slashes", () => {
    assert.deepEqual(parseS3Location("s3://backups"), { bucket: "backups", prefix: "" });
    assert.deepEqual(parseS3Location("s3://backups/"), { bucket: "backups", prefix: "" });
    assert.deepEqual(parseS3Location("s3://my.backups-1/chainvault/node-1/"), {
      bucket: "my.backups-1",
      prefix: "chainvault/node-1",
    });
  });

  test("parseS3Location rejects other schemes, bad bucket names and unsafe prefixes with TypeError", () => {
    for (const url of [
      "http://backups/x",
      "s3:/backups",
      "s3://",
      "s3://ab",
      "s3://Backups",
      "s3://back_ups",
      "s3://backups/../x",
      "s3://backups/a//b",
      "s3://backups//a",
      "s3://backups/a b",
    ])
      assert.throws(() => parseS3Location(url), TypeError, url);
  });

  test("parseS3Location does not echo credentials typed into a location", () => {
    assert.throws(
      () => parseS3Location(`s3://${WRONG_KEY_ID}:${SECRET}@backups/x`),
      (err: unknown) => err instanceof TypeError && !err.message.includes(SECRET),
    );
  });

  test("an access key id without a secret access key is rejected with TypeError up front", () => {
    assert.throws(
      () => new S3Backend("s3://backups", { env: { AWS_ACCESS_KEY_ID: WRONG_KEY_ID } }),
      /no secret access key; set AWS_SECRET_ACCESS_KEY/,
    );
  });
});
