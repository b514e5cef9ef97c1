/**
 * A repository in an S3 bucket (AWS or any S3-compatible store), under an optional key prefix.
 * Objects are S3 objects whose keys are `<prefix>/<object name>`. A PUT is atomic in S3: a
 * reader sees the previous object or the whole new one, never a part, so `put` is one request.
 */
import { createHash } from "node:crypto";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { errorMessage } from "../../util/errors.js";
import { assertObjectName, type Backend, type ObjectInfo } from "../backend.js";
import { VaultError, VaultErrorCode } from "../errors.js";

// 5 GiB: the largest object S3 accepts in a single PUT; larger ones need a multipart upload.
const PUT_SIZE_BYTES_MAX = 5 * 1024 ** 3;

// Three attempts with the SDK's jittered backoff ride out a dropped connection or a 503
// SlowDown, yet a dead endpoint fails an operation in seconds rather than minutes; the
// caller (a backup plan) has its own retry policy above this one.
const MAX_ATTEMPTS_DEFAULT = 3;

// 10 s to open a TCP connection: a reachable endpoint answers far sooner, and a black-holed
// one must not hang a backup. 120 s of silence on an open socket means the peer is gone.
const CONNECTION_TIMEOUT_MS = 10_000;
const SOCKET_TIMEOUT_MS = 120_000;

// AWS's default when no region is configured; S3-compatible stores mostly ignore the region,
// but request signing needs one.
const REGION_DEFAULT = "us-east-1";

// Socket errors that mean the endpoint could not be reached or dropped the connection.
const NETWORK_ERRNOS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
]);

// S3 error codes that mean the credentials were refused or lack a permission.
const DENIED_CODES = new Set([
  "AccessDenied",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
]);

/** Settings of an {@link S3Backend}; each one overrides the matching AWS environment variable. */
export interface S3BackendOptions {
  /** Endpoint URL of an S3-compatible store; overrides AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL. */
  endpoint?: string | undefined;
  /** Overrides AWS_REGION and AWS_DEFAULT_REGION; `us-east-1` when none is set. */
  region?: string | undefined;
  /** Overrides AWS_ACCESS_KEY_ID; given with `secretAccessKey`, the environment's keys are ignored. */
  accessKeyId?: string | undefined;
  /** Overrides AWS_SECRET_ACCESS_KEY. */
  secretAccessKey?: string | undefined;
  /** Overrides AWS_SESSION_TOKEN. */
  sessionToken?: string | undefined;
  /** Path-style URLs (`endpoint/bucket/key`); the default when a custom endpoint is set. */
  forcePathStyle?: boolean | undefined;
  /** Attempts per request, first one included (default 3). */
  maxAttempts?: number | undefined;
  /** Where the AWS_* variables are read from; `process.env` by default. */
  env?: Readonly<Record<string, string | undefined>> | undefined;
}

/** A parsed `s3://bucket/prefix` location. */
export interface S3Location {
  bucket: string;
  /** Key prefix without leading or trailing `/`; `""` for the bucket's root. */
  prefix: string;
}

/** Hides a `user:password@` part so that a location typed with credentials is never echoed. */
function redactUserinfo(url: string): string {
  return url.replace(/^([a-z0-9+.-]+:\/\/)[^/@]*@/i, "$1***@");
}

/**
 * Parses a repository location of the form `s3://bucket` or `s3://bucket/prefix/of/keys`.
 *
 * @example
 * parseS3Location("s3://backups/chainvault/node-1"); // { bucket: "backups", prefix: "chainvault/node-1" }
 */
export function parseS3Location(url: string): S3Location {
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(url);
  const bucket = m?.[1] ?? "";
  const prefix = (m?.[2] ?? "").replace(/\/+$/, "");
  const shown = JSON.stringify(redactUserinfo(url));
  if (shown !== JSON.stringify(url))
    throw new TypeError(
      `Invalid S3 location ${shown}: it holds credentials; give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead`,
    );
  if (!m) throw new TypeError(`Invalid S3 location ${shown}: expected s3://bucket or s3://bucket/prefix`);
  // S3's bucket naming rules: 3 to 63 lower-case letters, digits, dots and hyphens.
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    throw new TypeError(
      `Invalid S3 location ${shown}: bucket name ${JSON.stringify(bucket)} must be 3 to 63 lower-case letters, digits, dots or hyphens`,
    );
  if (prefix !== "" && !/^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/.test(prefix))
    throw new TypeError(
      `Invalid S3 location ${shown}: prefix ${JSON.stringify(prefix)} must be [A-Za-z0-9._-] segments joined by single slashes`,
    );
  return { bucket, prefix };
}

/** The endpoint as shown in messages: no user, password or query string. */
function endpointLabel(endpoint: string): string {
  const u = new URL(endpoint);
  return `${u.protocol}//${u.host}${u.pathname === "/" ? "" : u.pathname}`;
}

function nonEmpty(...values: (string | undefined)[]): string | undefined {
  return values.find((v) => v !== undefined && v !== "");
}

/** Client settings from the options, falling back to the AWS_* environment variables. */
function clientConfig(opts: S3BackendOptions): { config: S3ClientConfig; endpoint: string } {
  const env = opts.env ?? process.env;
  const endpoint = nonEmpty(opts.endpoint, env.AWS_ENDPOINT_URL_S3, env.AWS_ENDPOINT_URL);
  if (endpoint !== undefined && !URL.canParse(endpoint))
    throw new TypeError(`Invalid S3 endpoint ${JSON.stringify(redactUserinfo(endpoint))}: expected a URL`);
  const region = nonEmpty(opts.region, env.AWS_REGION, env.AWS_DEFAULT_REGION) ?? REGION_DEFAULT;
  const fromOpts = opts.accessKeyId !== undefined;
  const accessKeyId = fromOpts ? opts.accessKeyId : nonEmpty(env.AWS_ACCESS_KEY_ID);
  const secretAccessKey = fromOpts ? opts.secretAccessKey : nonEmpty(env.AWS_SECRET_ACCESS_KEY);
  const sessionToken = fromOpts ? opts.sessionToken : nonEmpty(env.AWS_SESSION_TOKEN);
  if (accessKeyId !== undefined && secretAccessKey === undefined)
    throw new TypeError(
      "Cannot use S3: an access key id is set but no secret access key; set AWS_SECRET_ACCESS_KEY",
    );
  const maxAttempts = opts.maxAttempts ?? MAX_ATTEMPTS_DEFAULT;
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1)
    throw new RangeError(`Invalid S3 maxAttempts ${maxAttempts}: expected a whole number of at least 1`);
  const config: S3ClientConfig = {
    region,
    forcePathStyle: opts.forcePathStyle ?? endpoint !== undefined,
    maxAttempts,
    requestHandler: { connectionTimeout: CONNECTION_TIMEOUT_MS, socketTimeout: SOCKET_TIMEOUT_MS },
    // Several S3-compatible stores reject the SDK's default CRC32 checksum headers; `put`
    // sends Content-MD5 instead, which AWS and every S3-compatible store check on upload.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  };
  if (endpoint !== undefined) config.endpoint = endpoint;
  // Without keys here the SDK's own chain applies (shared config files, SSO, instance roles).
  if (accessKeyId !== undefined && secretAccessKey !== undefined)
    config.credentials = { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
  return {
    config,
    endpoint: endpoint === undefined ? `https://s3.${region}.amazonaws.com` : endpointLabel(endpoint),
  };
}

/** What kind of failure an SDK or socket error is, from its S3 code, HTTP status or errno. */
type FailureKind = "missing" | "range" | "bucket" | "denied" | "network" | "credentials" | "other";

interface SdkErrorShape {
  name?: string;
  code?: string;
  errors?: { code?: string }[];
  $metadata?: { httpStatusCode?: number };
}

function s3CodeOf(err: unknown): string | undefined {
  return (err as SdkErrorShape | undefined)?.name;
}

function errnoOf(err: unknown): string | undefined {
  const e = err as SdkErrorShape | undefined;
  // Node's dual-stack connect throws an AggregateError whose parts carry the errno.
  return e?.code ?? e?.errors?.find((x) => x.code !== undefined)?.code;
}

function classify(err: unknown): FailureKind {
  const code = s3CodeOf(err);
  const status = (err as SdkErrorShape | undefined)?.$metadata?.httpStatusCode;
  const errno = errnoOf(err);
  if (code === "NoSuchBucket") return "bucket";
  if (code === "NoSuchKey" || code === "NotFound" || status === 404) return "missing";
  if (code === "InvalidRange" || status === 416) return "range";
  if ((code !== undefined && DENIED_CODES.has(code)) || status === 401 || status === 403) return "denied";
  if (code === "CredentialsProviderError") return "credentials";
  if ((errno !== undefined && NETWORK_ERRNOS.has(errno)) || code === "TimeoutError") return "network";
  return "other";
}

/**
 * A repository in an S3 bucket. Endpoint, region and credentials come from the options or,
 * failing those, from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_REGION / AWS_DEFAULT_REGION
 * and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN.
 *
 * @example
 * const backend = new S3Backend("s3://backups/chainvault", { endpoint: "http://127.0.0.1:9000" });
 */
export class S3Backend implements Backend {
  readonly location: string;
  readonly bucket: string;
  readonly prefix: string;
  /** The endpoint as shown in messages: never holds a secret. */
  readonly endpoint: string;
  private readonly client: S3Client;

  constructor(location: string, opts: S3BackendOptions = {}) {
    const { bucket, prefix } = parseS3Location(location);
    const { config, endpoint } = clientConfig(opts);
    this.bucket = bucket;
    this.prefix = prefix;
    this.location = prefix === "" ? `s3://${bucket}` : `s3://${bucket}/${prefix}`;
    this.endpoint = endpoint;
    this.client = new S3Client(config);
  }

  private key(name: string): string {
    assertObjectName(name);
    return this.prefix === "" ? name : `${this.prefix}/${name}`;
  }

  private missing(name: string): VaultError {
    return new VaultError(
      { code: VaultErrorCode.ObjectMissing, name, location: this.location },
      `Object ${name} is missing from repository ${this.location}`,
    );
  }

  private truncated(name: string, offset: number, length: number): VaultError {
    return new VaultError(
      { code: VaultErrorCode.ObjectCorrupt, name, offset, length, location: this.location },
      `Cannot read ${name} in repository ${this.location}: it ends before byte ${offset + length} (truncated); run \`chainvault verify\` to find the damage`,
    );
  }

  /** A BackendFailed error whose message says what to check; never includes credentials. */
  private fail(op: string, name: string, err: unknown): VaultError {
    const kind = classify(err);
    const s3Code = s3CodeOf(err);
    const errno = errnoOf(err);
    const hint =
      kind === "network"
        ? `cannot reach S3 endpoint ${this.endpoint} (${errno ?? s3Code}); check that it is reachable from this host and that the endpoint URL is right`
        : kind === "denied"
          ? `access to bucket ${this.bucket} was denied (${s3Code}); check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and the bucket's policy`
          : kind === "bucket"
            ? `bucket ${this.bucket} does not exist at ${this.endpoint}; create it or check the location`
            : kind === "credentials"
              ? "no S3 credentials were found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or configure an AWS profile"
              : `${s3Code ?? "error"} from ${this.endpoint}: ${errorMessage(err)}`;
    return new VaultError(
      {
        code: VaultErrorCode.BackendFailed,
        op,
        name,
        location: this.location,
        endpoint: this.endpoint,
        s3Code,
        errno,
        httpStatus: (err as SdkErrorShape | undefined)?.$metadata?.httpStatusCode,
      },
      `Cannot ${op} ${name} in repository ${this.location}: ${hint}`,
    );
  }

  async put(name: string, parts: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const Key = this.key(name);
    const data = parts instanceof Uint8Array ? parts : Buffer.concat(parts);
    if (data.length > PUT_SIZE_BYTES_MAX)
      throw new RangeError(
        `Cannot store ${name}: ${data.length} bytes exceeds S3's single PUT limit of 5 GiB`,
      );
    // The store checks this digest and refuses a body damaged in transit (BadDigest).
    const ContentMD5 = createHash("md5").update(data).digest("base64");
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key,
          Body: data,
          ContentLength: data.length,
          ContentMD5,
        }),
      );
    } catch (err) {
      throw this.fail("write", name, err);
    }
  }

  async get(name: string): Promise<Buffer> {
    const Key = this.key(name);
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      return await bodyBytes(res.Body);
    } catch (err) {
      if (classify(err) === "missing") throw this.missing(name);
      throw this.fail("read", name, err);
    }
  }

  async getRange(name: string, offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0)
      throw new RangeError(`Invalid range ${offset}+${length} of ${name}`);
    const Key = this.key(name);
    // An empty HTTP range cannot be written; the object must still exist.
    if (length === 0) {
      if ((await this.stat(name)) === undefined) throw this.missing(name);
      return Buffer.alloc(0);
    }
    let buf: Buffer;
    let ranged: boolean;
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key, Range: `bytes=${offset}-${offset + length - 1}` }),
      );
      buf = await bodyBytes(res.Body);
      ranged = res.ContentRange !== undefined;
    } catch (err) {
      const kind = classify(err);
      if (kind === "missing") throw this.missing(name);
      // 416: the object ends at or before `offset`.
      if (kind === "range") throw this.truncated(name, offset, length);
      throw this.fail("read", name, err);
    }
    // A store that ignores Range sends the whole object: take the part asked for.
    if (!ranged) buf = buf.subarray(offset, offset + length);
    if (buf.length < length) throw this.truncated(name, offset, length);
    return buf;
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    const Key = this.key(name);
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return { name, sizeBytes: res.ContentLength ?? 0 };
    } catch (err) {
      if (classify(err) === "missing") return undefined;
      throw this.fail("stat", name, err);
    }
  }

  /** Lists a folder: `data/ledger` and `data/ledger/` both mean the objects under `data/ledger/`. */
  async list(prefix: string): Promise<ObjectInfo[]> {
    const clean = prefix.replace(/\/+$/, "");
    const Prefix = clean === "" ? (this.prefix === "" ? "" : `${this.prefix}/`) : `${this.key(clean)}/`;
    const strip = this.prefix === "" ? 0 : this.prefix.length + 1;
    const out: ObjectInfo[] = [];
    let ContinuationToken: string | undefined;
    try {
      do {
        const res = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix,
            ...(ContinuationToken === undefined ? {} : { ContinuationToken }),
          }),
        );
        for (const o of res.Contents ?? []) {
          const name = o.Key?.slice(strip) ?? "";
          // Keys written by other tools (folder markers such as `x/`) are not repository objects.
          if (!isObjectName(name)) continue;
          out.push({ name, sizeBytes: o.Size ?? 0 });
        }
        const next = res.IsTruncated ? res.NextContinuationToken : undefined;
        // A store that hands back the same token would keep this loop going for ever.
        if (next !== undefined && next === ContinuationToken)
          throw new Error("the store repeated a continuation token");
        ContinuationToken = next;
      } while (ContinuationToken !== undefined);
    } catch (err) {
      throw this.fail("list", prefix, err);
    }
    return out;
  }

  async delete(name: string): Promise<void> {
    const Key = this.key(name);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (err) {
      // S3 answers 204 for a missing key; some compatible stores answer 404.
      if (classify(err) === "missing") return;
      throw this.fail("delete", name, err);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

function isObjectName(name: string): boolean {
  try {
    assertObjectName(name);
    return true;
  } catch {
    return false;
  }
}

async function bodyBytes(body: { transformToByteArray(): Promise<Uint8Array> } | undefined): Promise<Buffer> {
  if (body === undefined) return Buffer.alloc(0);
  const bytes = await body.transformToByteArray();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
