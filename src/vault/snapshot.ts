/**
 * Snapshot manifests: what a backup holds (components, their file trees, sizes, tags, the
 * anchor the source reported), signed with the repository's ed25519 key and sealed. A
 * snapshot is stored as `snapshots/<sha256 of the stored bytes>`, so any change to the
 * object shows three ways: its name, its authentication tag and its signature.
 */
import { createHash, type KeyObject } from "node:crypto";
import * as z from "../util/zod.js";
import { open, seal, signBytes, verifyBytes } from "./crypto.js";

const FileNodeSchema = z.object({
  /** Path relative to the component's root, `/`-separated. */
  path: z.string().check(z.minLength(1), z.maxLength(4096)),
  type: z.enum(["file", "dir", "symlink"]),
  mode: z.int().check(z.minimum(0), z.maximum(0o7777)),
  mtimeMs: z.number(),
  sizeBytes: z.int().check(z.minimum(0)),
  /** Chunk ids (hex) of a file, in order. */
  chunks: z.optional(z.array(z.string().check(z.regex(/^[0-9a-f]{64}$/)))),
  /** Target of a symlink, as stored. */
  target: z.optional(z.string().check(z.maxLength(4096))),
});
export type FileNode = z.infer<typeof FileNodeSchema>;

const ComponentSchema = z.object({
  name: z.string().check(z.regex(/^[a-z][a-z0-9-]*$/)),
  dataClass: z.string().check(z.regex(/^[a-z][a-z0-9-]*$/)),
  sizeBytes: z.int().check(z.minimum(0)),
  files: z.array(FileNodeSchema),
});
export type Component = z.infer<typeof ComponentSchema>;

export const ManifestSchema = z.object({
  version: z.literal(1),
  time: z.string(),
  host: z.string(),
  /** The source's own identity (a node id), for grouping and retention. */
  sourceId: z.string(),
  /** Where the data was read from (a directory or URL), for the operator. */
  source: z.string(),
  tags: z.array(z.string().check(z.regex(/^[A-Za-z0-9._-]{1,64}$/))),
  parent: z.optional(z.string()),
  /** The snapshot this one was copied from (another repository's id). */
  origin: z.optional(z.string()),
  /** What the source said about itself at backup time (for a node: height, head hash, state root). */
  anchor: z.optional(z.record(z.string(), z.union([z.string(), z.number()]))),
  components: z.array(ComponentSchema),
});
export type Manifest = z.infer<typeof ManifestSchema>;

const SNAPSHOT_AAD = Buffer.from("chainvault/snapshot/v1");

/** The bytes a manifest's signature covers: its JSON with keys in a fixed order. */
export function canonicalManifestBytes(m: Manifest): Buffer {
  return Buffer.from(canonicalJson(m));
}

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object")
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(v);
}

/** Signs and seals a manifest; returns the object's bytes and its id. */
export function encodeSnapshot(
  dataKey: Uint8Array,
  signKey: KeyObject,
  m: Manifest,
): { id: string; bytes: Buffer } {
  const signature = signBytes(signKey, canonicalManifestBytes(m)).toString("base64");
  const bytes = seal(dataKey, Buffer.from(JSON.stringify({ manifest: m, signature })), SNAPSHOT_AAD);
  return { id: createHash("sha256").update(bytes).digest("hex"), bytes };
}

/** Why a stored snapshot cannot be trusted, or its manifest. */
export function decodeSnapshot(
  dataKey: Uint8Array,
  signPublicKey: Uint8Array,
  id: string,
  bytes: Buffer,
): { manifest: Manifest } | { problem: string } {
  if (createHash("sha256").update(bytes).digest("hex") !== id)
    return { problem: "its content does not match its name (sha256)" };
  const plain = open(dataKey, bytes, SNAPSHOT_AAD);
  if (!plain) return { problem: "it does not authenticate (AES-GCM tag)" };
  let obj: { manifest?: unknown; signature?: unknown };
  try {
    obj = JSON.parse(plain.toString("utf8")) as typeof obj;
  } catch {
    return { problem: "its manifest is not valid JSON" };
  }
  const parsed = ManifestSchema.safeParse(obj.manifest);
  if (!parsed.success) return { problem: `its manifest is malformed: ${parsed.error.issues[0]?.message}` };
  if (
    typeof obj.signature !== "string" ||
    !verifyBytes(signPublicKey, canonicalManifestBytes(parsed.data), Buffer.from(obj.signature, "base64"))
  )
    return { problem: "its manifest signature does not verify" };
  return { manifest: parsed.data };
}

/** Every chunk id (hex) a manifest references, with its class. */
export function* manifestChunks(m: Manifest): Generator<{ id: string; dataClass: string }> {
  for (const c of m.components)
    for (const f of c.files) for (const id of f.chunks ?? []) yield { id, dataClass: c.dataClass };
}
