/**
 * The storage a repository lives on: a flat namespace of immutable objects addressed by
 * `/`-separated names (`config`, `keys/<id>`, `data/<class>/<xx>/<id>`, `index/<id>`,
 * `snapshots/<id>`, `locks/<id>`). Every implementation passes the same conformance suite
 * (test/integration/_backend-conformance.ts).
 */

/** One object as listed by {@link Backend.list}. */
export interface ObjectInfo {
  /** Full name, including the prefix that was listed. */
  name: string;
  sizeBytes: number;
}

/** See {@link Backend.openWriter}. */
export interface ObjectWriter {
  write(data: Uint8Array, position: number): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface Backend {
  /** Where the repository is, for messages: never holds a secret. */
  readonly location: string;
  /**
   * Stores an object atomically: after a crash at any instant the name holds either nothing
   * (or its previous content) or the whole of `data`, never a part. Durable when it resolves.
   * Given several parts, stores their concatenation (a pack is written from its blobs
   * without first copying them into one buffer).
   */
  put(name: string, data: Uint8Array | readonly Uint8Array[]): Promise<void>;
  /**
   * Optional: a writer that stores an object from parts written at given positions, so a
   * large object need not sit in memory. Nothing is visible under `name` until `commit`
   * resolves; `abort` (or a crash) leaves nothing.
   */
  openWriter?(name: string): Promise<ObjectWriter>;
  /** Reads a whole object; rejects with VaultErrorCode.ObjectMissing if there is none. */
  get(name: string): Promise<Buffer>;
  /** Reads `length` bytes at `offset`; rejects with ObjectMissing, or ObjectCorrupt if the object is shorter. */
  getRange(name: string, offset: number, length: number): Promise<Buffer>;
  /** Optional: {@link getRange} into a caller's buffer; returns the part of it filled. */
  getRangeInto?(name: string, offset: number, length: number, into: Buffer): Promise<Buffer>;
  /** The object's size, or undefined if it does not exist. */
  stat(name: string): Promise<ObjectInfo | undefined>;
  /** Every object under the folder `prefix` (such as `snapshots/`; `data/ledger` does not match `data/ledger-old/…`), in no set order. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Deletes an object; deleting one that does not exist succeeds. */
  delete(name: string): Promise<void>;
  /** Releases connections and handles. */
  close(): Promise<void>;
  /** Optional: releases cached handles not in use, keeping the backend usable. */
  releaseIdle?(): Promise<void>;
}

/** Object names are `[A-Za-z0-9._-]` segments joined by `/`: nothing can climb out of the repository. */
export function assertObjectName(name: string): void {
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/.test(name))
    throw new TypeError(`Invalid repository object name ${JSON.stringify(name)}`);
}
