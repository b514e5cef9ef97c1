/**
 * What a repository command will wait for first, started before the rest of the CLI loads:
 * the passphrase's scrypt derivation (its key file read straight from a local repository's
 * keys/ folder) and the boot of the crypto workers. Loading the CLI takes ~60-70 ms on a
 * small machine, and the derivation ~150-200 ms with the other threads busy beside it; an
 * incremental backup's first chunk waits for both. Only a hint: nothing here reports or
 * throws. The command opens its repository as always (repo-keys.ts), taking over the
 * derivation if it asks for the same passphrase and parameters (crypto.ts deriveKeyAhead),
 * and reports anything wrong itself. The key file is chosen and decoded by the command's
 * own code (repo-keys.ts keyFilesInOrder), and a password file is read only if it is a
 * regular file. This module imports little of the CLI, so it runs first.
 */
import { statSync } from "node:fs";
import { LocalBackend } from "../vault/backends/local.js";
import { deriveKeyAhead } from "../vault/crypto.js";
import { CryptoWorkers } from "../vault/crypto-workers.js";
import { keyFilesInOrder } from "../vault/repo-keys.js";
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
 * The command's password, if reading it now leaves it there for the command to read again:
 * only a regular file (a pipe or `<(...)` can be read once, and that read is the command's).
 */
function passwordNow(args: string[]): string | undefined {
  const file = optionOf(args, "--password-file");
  if (file !== undefined && !statSync(file).isFile()) return undefined;
  return readPassword(file);
}

/**
 * Starts what the command in `argv` (process.argv) will need first; never fails. Resolves
 * once the derivation, if any, is under way (the entry does not wait for it; tests do).
 */
export async function startEarly(argv: string[]): Promise<void> {
  const command = argv[2];
  if (command === undefined || !REPO_COMMANDS.has(command)) return;
  const args = argv.slice(3);
  try {
    const w = workersFor(command, args);
    if (w) CryptoWorkers.prewarm(w.busy);
    const repo = optionOf(args, "--repo");
    if (!repo || repo.includes("://")) return;
    const password = passwordNow(args);
    if (password === undefined) return;
    // The key file the command will try first, chosen and decoded as the command does.
    const first = (await keyFilesInOrder(new LocalBackend(repo))).find((k) => k.kf)?.kf;
    // Observed inside: its failure is the command's to report when it derives the key itself.
    if (first) void deriveKeyAhead(password, first.kdf);
  } catch {
    // The command finds and reports whatever stopped this (no password, no repository, ...).
  }
}
