import { CodedError } from "../util/errors.js";

/** Codes of the failures of repository operations that callers act on. */
export enum VaultErrorCode {
  /** The repository does not exist at the location given. */
  RepoMissing = "VAULT_REPO_MISSING",
  /** A repository already exists where `init` was asked to create one. */
  RepoExists = "VAULT_REPO_EXISTS",
  /** No key file opens with the password given. */
  WrongPassword = "VAULT_WRONG_PASSWORD",
  /** No password was given (environment variable or file). */
  PasswordMissing = "VAULT_PASSWORD_MISSING",
  /** An object the repository needs is not in the backend. */
  ObjectMissing = "VAULT_OBJECT_MISSING",
  /** An object's content does not match its name, signature or authentication tag. */
  ObjectCorrupt = "VAULT_OBJECT_CORRUPT",
  /** A snapshot named on the command line does not exist. */
  SnapshotMissing = "VAULT_SNAPSHOT_MISSING",
  /** Another process holds a lock that conflicts with this operation. */
  Locked = "VAULT_LOCKED",
  /** The backend refused or failed an operation (network, permissions). */
  BackendFailed = "VAULT_BACKEND_FAILED",
  /** The repository's disk, or a restore target's, is full: nothing was committed. */
  NoSpace = "VAULT_NO_SPACE",
  /** A snapshot's tree would write outside the restore target. */
  UnsafePath = "VAULT_UNSAFE_PATH",
  /** Verification found damage; the payload lists what. */
  VerifyFailed = "VAULT_VERIFY_FAILED",
  /** The restore target is in a state this operation will not touch. */
  TargetConflict = "VAULT_TARGET_CONFLICT",
  /** Bad input given to an operation (a source that cannot be read, a malformed option). */
  BadInput = "VAULT_BAD_INPUT",
}

/** A failure of a repository operation, with the values involved in `detail`. */
export class VaultError extends CodedError<VaultErrorCode> {}
