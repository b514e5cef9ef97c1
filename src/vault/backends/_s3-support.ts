/**
 * What the S3 backend needs besides the class: its settings and location syntax, the client
 * configuration from options and the AWS environment, and the sorting of SDK errors.
 */
import type { S3ClientConfig } from "@aws-sdk/client-s3";

// 5 GiB: the largest object S3 accepts in a single PUT; larger ones need a multipart upload.
export const PUT_SIZE_BYTES_MAX = 5 * 1024 ** 3;

// Three attempts with the SDK's jittered backoff ride out a dropped connection or a 503
// SlowDown, yet a dead endpoint fails an operation in seconds rather than minutes; the
// caller (a backup plan) has its own retry policy above this one.
export const MAX_ATTEMPTS_DEFAULT = 3;

// 10 s to open a TCP connection: a reachable endpoint answers far sooner, and a black-holed
// one must not hang a backup. 120 s of silence on an open socket means the peer is gone.
export const CONNECTION_TIMEOUT_MS = 10_000;
export const SOCKET_TIMEOUT_MS = 120_000;

// AWS's default when no region is configured; S3-compatible stores mostly ignore the region,
// but request signing needs one.
export const REGION_DEFAULT = "us-east-1";

// Socket errors that mean the endpoint could not be reached or dropped the connection.
export const NETWORK_ERRNOS = new Set([
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
export const DENIED_CODES = new Set([
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
export function redactUserinfo(url: string): string {
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
export function endpointLabel(endpoint: string): string {
  const u = new URL(endpoint);
  return `${u.protocol}//${u.host}${u.pathname === "/" ? "" : u.pathname}`;
}

export function nonEmpty(...values: (string | undefined)[]): string | undefined {
  return values.find((v) => v !== undefined && v !== "");
}

/** Client settings from the options, falling back to the AWS_* environment variables. */
export function clientConfig(opts: S3BackendOptions): { config: S3ClientConfig; endpoint: string } {
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
export type FailureKind = "missing" | "range" | "bucket" | "denied" | "network" | "credentials" | "other";

export interface SdkErrorShape {
  name?: string;
  code?: string;
  errors?: { code?: string }[];
  $metadata?: { httpStatusCode?: number };
}

export function s3CodeOf(err: unknown): string | undefined {
  return (err as SdkErrorShape | undefined)?.name;
}

export function errnoOf(err: unknown): string | undefined {
  const e = err as SdkErrorShape | undefined;
  // Node's dual-stack connect throws an AggregateError whose parts carry the errno.
  return e?.code ?? e?.errors?.find((x) => x.code !== undefined)?.code;
}

export function classify(err: unknown): FailureKind {
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
