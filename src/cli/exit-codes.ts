/**
 * Exit codes of the `chainvault` command, documented in the README.
 */
export const ExitCode = {
  /** Everything asked for holds. */
  Ok: 0,
  /** An unexpected failure: a bug or an environment problem; the stack is printed. */
  Failure: 1,
  /** Bad arguments or a malformed file: nothing was changed. */
  Usage: 2,
  /** A node, devnet or file named on the command line could not be reached or found. */
  Unreachable: 3,
  /** A check failed: nodes disagree, a chain does not validate. */
  CheckFailed: 4,
  /** Another process holds the lock. */
  Locked: 5,
  /** No password was given, or it opens none of the repository's key files: nothing was written. */
  BadPassword: 6,
  /** A disk is full (the repository's, a restore target's, a node's): no snapshot was written, a restore target is unchanged. */
  NoSpace: 7,
} as const;
