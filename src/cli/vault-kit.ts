/**
 * What the repository commands share: the password, opening the repository (with the crypto
 * workers booting alongside when a command will use them), the progress bar, the option
 * parsers and the options every repository command takes.
 */
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { openBackend } from "../vault/backends/open.js";
import { CryptoWorkers } from "../vault/crypto-workers.js";
import { Repository } from "../vault/repository.js";
import { readPassword } from "./password.js";

export { readPassword };

/** The options {@link withRepo} adds: where the repository is, its password, JSON output. */
export interface RepoOpts {
  repo: string;
  passwordFile?: string;
  json?: boolean;
}

/** Opens the repository of `--repo` with the password of {@link readPassword}. */
export async function openRepo(o: RepoOpts): Promise<Repository> {
  const password = readPassword(o.passwordFile);
  return Repository.open(await openBackend(o.repo), password);
}

/**
 * {@link openRepo} for a command that will use the crypto workers: they boot while the
 * passphrase's key is derived (scrypt on the thread pool), not after it.
 */
export function openRepoWithWorkers(o: RepoOpts, mainThreadBusy: boolean): Promise<Repository> {
  CryptoWorkers.prewarm(mainThreadBusy);
  return openRepo(o);
}

/** A progress bar on a terminal (stderr), nothing otherwise. */
export function progressBar(enabled: boolean, label: string) {
  if (!enabled || !process.stderr.isTTY) return { update: (_d: number, _t: number) => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {value}/{total} MiB | {eta_formatted} left`,
      stream: process.stderr,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let last = 0;
  return {
    update: (done: number, total: number) => {
      const now = Date.now();
      if (!started) {
        bar.start(Math.max(1, Math.round(total / 1048576)), 0);
        started = true;
      }
      if (now - last < 100 && done < total) return;
      last = now;
      bar.setTotal(Math.max(1, Math.round(total / 1048576)));
      bar.update(Math.round(done / 1048576));
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

/** Bytes as MiB with one decimal, for people. */
export { mib } from "../util/format.js";

/** A comma-separated option value as a list, blanks dropped. */
export const list = (v: string): string[] =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** Adds the options every repository command takes: --repo, --password-file, --json. */
export function withRepo(c: Command): Command {
  return c
    .requiredOption("--repo <repo>", "repository: a directory or s3://bucket/prefix")
    .option("--password-file <file>", "file holding the repository password (default: $CHAINVAULT_PASSWORD)")
    .option("--json", "print the result as JSON", false);
}
