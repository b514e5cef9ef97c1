// Goal: the key derivation the CLI starts before it has loaded (cli/early-start.ts) is the one
// the command's repository open takes over, and it never hands a key to another passphrase.
// Method: crypto.ts deriveKeyAhead / deriveKey against fresh scrypt derivations; startEarly on
// a real local repository, then Repository.open with the right and a wrong passphrase.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { startEarly } from "../../src/cli/early-start.js";
import { readPassword } from "../../src/cli/password.js";
import { LocalBackend } from "../../src/vault/backends/local.js";
import { derivationsAhead, deriveKey, deriveKeyAhead } from "../../src/vault/crypto.js";
import { VaultError, VaultErrorCode } from "../../src/vault/errors.js";
import { Repository } from "../../src/vault/repository.js";
import { newRepo } from "./_vault-fixture.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

const params = () => ({ N: 1024, r: 8, p: 1, salt: randomBytes(16).toString("base64") });

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "chainvault-early-start-"));
});
after(() => rm(dir, { recursive: true, force: true }));

test("a derivation started ahead is taken over once by deriveKey with the same passphrase and parameters", async () => {
  const p = params();
  const started = deriveKeyAhead("passphrase one", p);
  assert.equal(derivationsAhead(), 1);
  assert.equal(deriveKey("passphrase one", p), started, "deriveKey ran scrypt again");
  assert.equal(derivationsAhead(), 0);
  // Taken once: a later derivation is a fresh one, with the same result.
  const again = deriveKey("passphrase one", p);
  assert.notEqual(again, started);
  assert.deepEqual(await again, await started);
});

test("a derivation started ahead is never handed to another passphrase", async () => {
  const p = params();
  const started = deriveKeyAhead("the right one", p);
  const other = deriveKey("another one", p);
  assert.notEqual(other, started);
  assert.notDeepEqual(await other, await started);
  // Still waiting for its own passphrase.
  assert.equal(derivationsAhead(), 1);
  assert.equal(deriveKey("the right one", p), started);
  assert.equal(derivationsAhead(), 0);
});

test("startEarly derives the key of a local repository's key file, and opening the repository takes it over", async () => {
  const { root, password } = await newRepo(dir, "repo-right");
  const pwFile = join(dir, "pw-right");
  await writeFile(pwFile, `${password}\n`);
  await startEarly(["node", "chainvault", "snapshots", "--repo", root, "--password-file", pwFile]);
  assert.equal(derivationsAhead(), 1, "no derivation was started");
  const repo = await Repository.open(new LocalBackend(root), password);
  assert.ok(repo.keyId);
  assert.equal(derivationsAhead(), 0, "opening the repository derived the key again");
});

test("startEarly with a wrong passphrase: opening still fails as wrong, and the derivation is used up", async () => {
  const { root } = await newRepo(dir, "repo-wrong");
  const before = process.env.CHAINVAULT_PASSWORD;
  process.env.CHAINVAULT_PASSWORD = "not the passphrase";
  try {
    await startEarly(["node", "chainvault", "backup", `--repo=${root}`, "--node", "/nowhere"]);
  } finally {
    if (before === undefined) delete process.env.CHAINVAULT_PASSWORD;
    else process.env.CHAINVAULT_PASSWORD = before;
  }
  assert.equal(derivationsAhead(), 1);
  await assert.rejects(Repository.open(new LocalBackend(root), "not the passphrase"), (err: unknown) => {
    assert.ok(err instanceof VaultError);
    assert.equal(err.code, VaultErrorCode.WrongPassword);
    return true;
  });
  assert.equal(derivationsAhead(), 0);
});

test("startEarly starts nothing and throws nothing without a local repository or for other commands", async () => {
  for (const argv of [
    ["node", "chainvault", "backup", "--repo", join(dir, "missing")],
    ["node", "chainvault", "backup", "--repo", "s3://bucket/prefix"],
    ["node", "chainvault", "backup"],
    ["node", "chainvault", "repo", "init", "--repo", dir],
    ["node", "chainvault"],
  ])
    await startEarly(argv);
  assert.equal(derivationsAhead(), 0);
});

test("startEarly leaves a password file that is not a regular file (a pipe) for the command to read", async () => {
  const { root, password } = await newRepo(dir, "repo-fifo");
  const fifo = join(dir, "pw-fifo");
  assert.equal(spawnSync("mkfifo", [fifo]).status, 0);
  // In a child with a deadline: reading the pipe there would block until a writer came.
  const built = join(ROOT, "dist", "src");
  if (!existsSync(join(built, "cli", "early-start.js")))
    throw new Error(`${built} is missing: run npm run build first (npm test does)`);
  const child = `
    import { startEarly } from ${JSON.stringify(join(built, "cli", "early-start.js"))};
    import { derivationsAhead } from ${JSON.stringify(join(built, "vault", "crypto.js"))};
    await startEarly(["node", "chainvault", "snapshots", "--repo", process.argv[1], "--password-file", process.argv[2]]);
    console.log(derivationsAhead());
    process.exit(0);
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", child, root, fifo], {
    encoding: "utf8",
    timeout: 20_000,
  });
  assert.equal(r.status, 0, `startEarly did not return (signal ${r.signal}): ${r.stderr}`);
  assert.equal(r.stdout.trim(), "0");
  // The command's own read gets what the writer sends, and it opens the repository.
  const writer = spawn("sh", ["-c", 'printf "%s\\n" "$0" > "$1"', password, fifo]);
  const got = readPassword(fifo);
  await new Promise((done) => writer.on("exit", done));
  assert.equal(got, password);
  assert.ok((await Repository.open(new LocalBackend(root), got)).keyId);
});

test("startEarly skips a key file the command would skip (checksummed but not of this format) and derives the next", async () => {
  const { root, password } = await newRepo(dir, "repo-skip");
  // Sorted first, sound checksum, version 2 and a costly N: the command's decodeKeyFile
  // rejects it, so deriving it would be work the command never uses.
  const body = JSON.stringify({
    version: 2,
    id: "0000000000000000",
    createdAt: "2026-01-01T00:00:00Z",
    host: "h",
    user: "u",
    label: "l",
    kdf: { name: "scrypt", N: 2 ** 20, r: 8, p: 1, salt: randomBytes(16).toString("base64") },
    wrapped: "",
  });
  await writeFile(
    join(root, "keys", "0000000000000000"),
    `${body}\n${createHash("sha256").update(body).digest("hex")}\n`,
  );
  await writeFile(join(dir, "pw-skip"), password);
  await startEarly([
    "node",
    "chainvault",
    "snapshots",
    "--repo",
    root,
    "--password-file",
    join(dir, "pw-skip"),
  ]);
  assert.equal(derivationsAhead(), 1);
  assert.ok((await Repository.open(new LocalBackend(root), password)).keyId);
  assert.equal(derivationsAhead(), 0, "the derivation started was not the one the command used");
});
