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
} from "@aws-sdk/client-s3";
import { errorMessage } from "../../util/errors.js";
import { assertObjectName, type Backend, type ObjectInfo } from "../backend.js";
import { VaultError, VaultErrorCode } from "../errors.js";
import {
  classify,
  clientConfig,
  errnoOf,
  PUT_SIZE_BYTES_MAX,
  parseS3Location,
  type S3BackendOptions,
  type SdkErrorShape,
  s3CodeOf,
} from "./_s3-support.js";

export { parseS3Location, type S3BackendOptions, type S3Location } from "./_s3-support.js";

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
