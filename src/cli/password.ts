/**
 * The repository password of a command, kept apart from the rest of the CLI so that
 * early-start.ts can read it before the CLI has loaded.
 */
import { readFileSync } from "node:fs";
import { VaultError, VaultErrorCode } from "../vault/errors.js";

/** The password: from --password-file, else CHAINVAULT_PASSWORD; never echoed anywhere. */
export function readPassword(
  file: string | undefined,
  envName = "CHAINVAULT_PASSWORD",
  what = "--password-file",
): string {
  if (file) {
    try {
      return readFileSync(file, "utf8").replace(/\r?\n$/, "");
    } catch (err) {
      throw new VaultError(
        { code: VaultErrorCode.PasswordMissing, file },
        `Cannot read the password file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  }
  const env = process.env[envName];
  if (env === undefined || env === "")
    throw new VaultError(
      { code: VaultErrorCode.PasswordMissing },
      `No repository password: set ${envName} or pass ${what}`,
    );
  return env;
}
