import { resolve } from "node:path";
import type { Backend } from "../backend.js";
import { LocalBackend } from "./local.js";

/**
 * The backend of a repository location: `s3://bucket/prefix` for S3-compatible storage
 * (endpoint, region and credentials from the AWS variables), anything else a directory.
 * The S3 client is loaded only when used: it costs ~100 ms of start-up.
 */
export async function openBackend(location: string): Promise<Backend> {
  if (location.startsWith("s3://")) {
    const { S3Backend } = await import("./s3.js");
    return new S3Backend(location);
  }
  return new LocalBackend(resolve(location));
}
