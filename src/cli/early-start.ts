/**
 * What a repository command will wait for first, started before the rest of the CLI loads:
 * the passphrase's scrypt derivation (its key file read straight from a local repository's
 * keys/ folder) and the boot of the crypto workers. Loading the CLI takes ~60-70 ms on a
 * small machine, and the derivation ~150-200 ms with the other threads busy beside it; an
 * incremental backup's first chunk waits for both. Only a hint: nothing here reports or
 * throws. The command opens its repository as always (repo-keys.ts), taking over the
 * derivation if it asks for the same passphrase and parameters (crypto.ts deriveKeyAhead),
 * and reports anything wrong itself; a key file this code reads wrongly only costs a
 * derivation nobody uses. This module imports nothing heavy, so it runs first.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { deriveKeyAhead, type ScryptParams } from "../vault/crypto.js";
import { CryptoWorkers } from "../vault/crypto-workers.js";
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

/** The scrypt parameters of the first key file that repo-keys.ts would try, if one looks sound. */
function firstKeyParams(repo: string): ScryptParams | undefined {
  const dir = join(repo, "keys");
  for (const name of readdirSync(dir).sort()) {
    if (name.includes(".tmp-")) continue;
    const text = readFileSync(join(dir, name), "utf8");
    const nl = text.indexOf("\n");
    if (nl < 0) continue;
    const body = text.slice(0, nl);
    if (text.slice(nl + 1) !== `${createHash("sha256").update(body).digest("hex")}\n`) continue;
    const kdf = (JSON.parse(body) as { kdf?: Partial<ScryptParams> & { name?: unknown } }).kdf;
    const { N, r, p, salt } = kdf ?? {};
    if (
      kdf?.name === "scrypt" &&
      Number.isSafeInteger(N) &&
      Number.isSafeInteger(r) &&
      Number.isSafeInteger(p) &&
      typeof salt === "string"
    )
      return { N: N!, r: r!, p: p!, salt };
  }
  return undefined;
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
    const params = firstKeyParams(repo);
    // Observed inside: its failure is the command's to report when it derives the key itself.
    if (params) void deriveKeyAhead(readPassword(optionOf(args, "--password-file")), params);
  } catch {
    // The command finds and reports whatever stopped this (no password, no repository, ...).
  }
}
