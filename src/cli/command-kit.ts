/**
 * What every `chainvault` command shares: argument parsers, and the wrapper that turns a
 * thrown error into a message and a documented exit code.
 */
import { InvalidArgumentError } from "commander";
import { CodedError, isNoSpace } from "../util/errors.js";
import { ExitCode } from "./exit-codes.js";

export function int(name: string, min = 0) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be an integer of at least ${min}`);
    return n;
  };
}

/** Maps an error code to the exit code the README documents; one place for every command. */
export function exitCodeFor(err: CodedError): number {
  const c = err.code;
  if (c === "VAULT_WRONG_PASSWORD" || c === "VAULT_PASSWORD_MISSING") return ExitCode.BadPassword;
  if (/NO_SPACE/.test(c)) return ExitCode.NoSpace;
  if (/LOCKED|RUNNING/.test(c)) return ExitCode.Locked;
  if (/VERIFY_FAILED|CORRUPT|UNSAFE_PATH/.test(c)) return ExitCode.CheckFailed;
  if (/UNREACHABLE|NOT_FOUND|REPO_MISSING|SNAPSHOT_MISSING|BACKEND_FAILED/.test(c))
    return ExitCode.Unreachable;
  if (/INVALID|EXISTS|CONFIG|GENESIS|NOT_VALIDATOR|BAD_INPUT|TARGET_CONFLICT/.test(c)) return ExitCode.Usage;
  return ExitCode.Failure;
}

export function run<A extends unknown[]>(fn: (...args: A) => Promise<number | undefined> | Promise<void>) {
  return async (...args: A): Promise<void> => {
    try {
      const code = await fn(...args);
      process.exitCode = typeof code === "number" ? code : ExitCode.Ok;
    } catch (err) {
      if (err instanceof CodedError) {
        process.stderr.write(`chainvault: ${err.message}\n`);
        process.exitCode = exitCodeFor(err);
      } else if (isNoSpace(err)) {
        // A full disk is the operator's to fix, not a bug: no stack, its own exit code.
        process.stderr.write(
          `chainvault: ${(err as Error).message}: the disk is full; free space and run the command again\n`,
        );
        process.exitCode = ExitCode.NoSpace;
      } else if (err instanceof RangeError || err instanceof TypeError) {
        process.stderr.write(`chainvault: ${err.message}\n`);
        process.exitCode = ExitCode.Usage;
      } else {
        process.stderr.write(`chainvault: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
        process.exitCode = ExitCode.Failure;
      }
    }
  };
}
