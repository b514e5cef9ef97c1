/**
 * What a repository command will wait for first, started before the rest of the CLI loads:
 * the passphrase's scrypt derivation (its key file read straight from a local repository's
 * keys/ folder) and the boot of the crypto workers. Loading the CLI takes ~60-70 ms on a
 * small machine, and the derivation ~150-200 ms with the other threads busy beside it; an
 * incremental backup's first chunk waits for both. Only a hint: nothing here reports or
 * throws. The command opens its repository as always (repo-keys.ts), taking over the
 * derivation if it asks for the same passphrase and parameters (crypto.ts deriveKeyAhead),
 * and reports anything wrong itself. The key file is chosen and decoded as the command
 * does, and a password file is read only if it is a regular file. This module imports
 * little (the key file's schema is the heaviest), so it runs first.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { deriveKeyAhead, type ScryptParams } from "../vault/crypto.js";
import { CryptoWorkers } from "../vault/crypto-workers.js";
import { decodeKeyFile } from "../vault/keyfile.js";
import { readPassword } from "./password.js";

// Commands that open a repository given by --repo with --password-file or CHAINVAULT_PASSWORD.
const REPO_COMMANDS = new Set(["backup", "snapshots", "verify", "restore", "forget", "prune"]);

/** The value of `--name v` or `--name=v` in argv, if given. */
function optionOf(argv: string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") return undefined;
    if (a === name) return argv[i + 1];
    if (a.startsWith(`${name}=`)) return a.slice(name.length + 1);
  }
  return undefined;
}

/** Whether the command will use the crypto workers, and whether its main thread has bulk work of its own. */
function workersFor(command: string, args: string[]): { busy: boolean } | undefined {
  if (command === "backup") return { busy: true };
  if (command === "restore") return { busy: false };
  const reads = args.some(
    (a) => a === "--read-data" || a.startsWith("--read-data-subset") || a === "--chain",
  );
  return command === "verify" && reads ? { busy: false } : undefined;
}

/**
 * The scrypt parameters of the first key file repo-keys.ts would try: regular files of
 * keys/ in the same order, decoded by the same decodeKeyFile (checksum and schema), so the
 * derivation started is one the command would run itself.
 */
function firstKeyParams(repo: string): ScryptParams | undefined {
  const dir = join(repo, "keys");
  const names = readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isFile() && !d.name.includes(".tmp-"))
    .map((d) => d.name)
    .sort((a, b) => a.localeCompare(b));
  for (const name of names) {
    const kf = decodeKeyFile(readFileSync(join(dir, name)));
    if (kf) return kf.kdf;
  }
  return undefined;
}

/**
 * The command's password, if reading it now leaves it there for the command to read again:
 * only a regular file (a pipe or `<(...)` can be read once, and that read is the command's).
 */
function passwordNow(args: string[]): string | undefined {
  const file = optionOf(args, "--password-file");
  if (file !== undefined && !statSync(file).isFile()) return undefined;
  return readPassword(file);
}

/** Starts what the command in `argv` (process.argv) will need first; never throws. */
export function startEarly(argv: string[]): void {
  const command = argv[2];
  if (command === undefined || !REPO_COMMANDS.has(command)) return;
  const args = argv.slice(3);
  try {
    const w = workersFor(command, args);
    if (w) CryptoWorkers.prewarm(w.busy);
    const repo = optionOf(args, "--repo");
    if (!repo || repo.includes("://")) return;
    const password = passwordNow(args);
    const params = password === undefined ? undefined : firstKeyParams(repo);
    // Observed inside: its failure is the command's to report when it derives the key itself.
    if (password !== undefined && params) void deriveKeyAhead(password, params);
  } catch {
    // The command finds and reports whatever stopped this (no password, no repository, ...).
  }
}
