/**
 * Base class for domain errors that callers act on: a stable code, a payload with the
 * values involved, and a message that says what failed, where and what to do next.
 *
 * @example
 * throw new ChainError({ code: ChainErrorCode.BlockInvalid, height }, `Cannot import block ${height}: bad signature`);
 */
export class CodedError<C extends string = string> extends Error {
  readonly code: C;
  readonly detail: Record<string, unknown>;

  constructor(detail: { code: C } & Record<string, unknown>, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = detail.code;
    this.detail = detail;
  }
}

/**
 * Whether an error means the disk (or the user's quota, or its inodes) is full: a file
 * system's ENOSPC or EDQUOT, or SQLite's SQLITE_FULL.
 */
export function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === "ENOSPC" || code === "EDQUOT" || code === "SQLITE_FULL";
}

/** Returns the message of any thrown value, for logs and CLI output. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
