/**
 * A real S3 API server for tests: s3rver (a pure-JavaScript implementation of the S3 REST API
 * that stores objects in a directory) on 127.0.0.1, an ephemeral port and a temp directory.
 *
 * s3rver encrypts ListObjectsV2 continuation tokens with DES, which the OpenSSL 3 inside
 * Node 20 only offers through its legacy provider: without it every listing of more than
 * one page fails with a 500. So the server runs in a child Node process started with
 * `--openssl-legacy-provider` (this same file, as its entry point), leaving the test
 * process's crypto untouched.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** A running server and the settings an S3 client needs to use it. */
export interface S3TestServer {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  /** A bucket created before the server accepted its first request. */
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Stops the server and deletes its directory. */
  close(): Promise<void>;
}

// s3rver's built-in account. It checks that a SigV4 request names a known access key id but
// does not verify the signature, so a wrong secret key goes unnoticed; a wrong key id is refused.
const ACCESS_KEY_ID = "S3RVER";
const SECRET_ACCESS_KEY = "S3RVER";

// 30 s for the child to load s3rver and listen: it takes well under a second, and a server
// that never starts must fail the suite rather than hang it.
const START_TIMEOUT_MS = 30_000;

// Marks the child's invocation of this file.
const CHILD_FLAG = "--s3rver-child";

/**
 * Starts s3rver on 127.0.0.1 with a fresh directory and one bucket.
 *
 * @example
 * const s3 = await startS3Server();
 * after(() => s3.close());
 */
export async function startS3Server(bucket = "chainvault-test"): Promise<S3TestServer> {
  const directory = await mkdtemp(join(tmpdir(), "chainvault-s3rver-"));
  const child = spawn(
    process.execPath,
    [
      "--openssl-legacy-provider",
      "--import",
      "tsx",
      fileURLToPath(import.meta.url),
      CHILD_FLAG,
      directory,
      bucket,
    ],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  let port: number;
  try {
    port = await portOf(child);
  } catch (err) {
    child.kill("SIGKILL");
    await rm(directory, { recursive: true, force: true });
    throw err;
  }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    accessKeyId: ACCESS_KEY_ID,
    secretAccessKey: SECRET_ACCESS_KEY,
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        // Closing stdin tells the child to stop its server and exit.
        child.stdin?.end();
        await exited;
      }
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/** Waits for the child's first stdout line, `{"port":N}`; rejects if it exits or stalls first. */
function portOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(
      () => done(new Error(`s3rver did not start within ${START_TIMEOUT_MS} ms: ${err}`)),
      START_TIMEOUT_MS,
    );
    const onExit = (code: number | null) =>
      done(new Error(`s3rver exited with code ${code} on start: ${err}`));
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const nl = out.indexOf("\n");
      if (nl >= 0) done(undefined, (JSON.parse(out.slice(0, nl)) as { port: number }).port);
    };
    const onErr = (chunk: Buffer) => {
      err += chunk.toString();
    };
    function done(e: Error | undefined, port?: number): void {
      clearTimeout(timer);
      child.off("exit", onExit);
      child.stdout?.off("data", onData);
      // Later output is not read; keep the pipe drained so the child never blocks on it.
      child.stdout?.resume();
      if (e) reject(e);
      else resolve(port!);
    }
    child.once("exit", onExit);
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onErr);
  });
}

/** The part of s3rver's API used here; the package ships no type declarations. */
interface S3rverServer {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverConstructor = new (opts: {
  address: string;
  port: number;
  directory: string;
  silent: boolean;
  vhostBuckets: boolean;
  configureBuckets: { name: string }[];
}) => S3rverServer;

/** The child: serves until its stdin closes (the parent asked, or died), then exits. */
async function runChild(directory: string, bucket: string): Promise<void> {
  const S3rver = createRequire(import.meta.url)("s3rver") as S3rverConstructor;
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    directory,
    silent: true,
    // Buckets are addressed by path (`/bucket/key`): 127.0.0.1 has no subdomains.
    vhostBuckets: false,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  process.stdin.resume();
  process.stdin.once("end", () => {
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}

if (process.argv[2] === CHILD_FLAG) {
  const [directory, bucket] = process.argv.slice(3);
  if (directory === undefined || bucket === undefined)
    throw new TypeError("Usage: _s3-server.ts --s3rver-child DIR BUCKET");
  await runChild(directory, bucket);
}
