/**
 * The three backup tools of bench/backup as command lines: chainvault (this project's CLI),
 * restic and borg, each with its own repository, cache and secret under the work directory.
 * Each names where its restore puts the data directory, since restic keeps the absolute
 * source path under the target and borg the path without its leading slash.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "./measure.js";

export type ToolName = "chainvault" | "restic" | "borg";

export const TOOL_NAMES: readonly ToolName[] = ["chainvault", "restic", "borg"];

/** The commands of one tool against one repository. */
export interface BackupTool {
  name: ToolName;
  repo: string;
  init: Command;
  full: Command;
  incremental: Command;
  restore(target: string): Command;
  verify: Command;
  /** Where, under a restore target, the restored copy of the node directory is. */
  restoredRoot(target: string): string;
}

// A benchmark secret, the same strength for every tool; never a real one.
const PASSWORD = "bench-backup-not-a-secret";

/** Builds a tool's commands; `work` is a directory of its own for the repository and caches. */
export function makeTool(name: ToolName, work: string, nodeDir: string): BackupTool {
  mkdirSync(work, { recursive: true });
  const repo = join(work, "repo");
  if (name === "chainvault") {
    // The installed command, as an operator runs it (bin/chainvault sets the allocator).
    const cli = [fileURLToPath(new URL("../../../bin/chainvault", import.meta.url))];
    // Any cache it keeps under XDG_CACHE_HOME starts empty, like restic's and borg's.
    const env = { CHAINVAULT_PASSWORD: PASSWORD, XDG_CACHE_HOME: join(work, "cache") };
    return {
      name,
      repo,
      init: { argv: [...cli, "repo", "init", "--repo", repo], env },
      full: { argv: [...cli, "backup", "--repo", repo, "--node", nodeDir, "--tag", "manual"], env },
      incremental: { argv: [...cli, "backup", "--repo", repo, "--node", nodeDir, "--tag", "manual"], env },
      restore: (target) => ({ argv: [...cli, "restore", "--repo", repo, "latest", "--target", target], env }),
      verify: { argv: [...cli, "verify", "--repo", repo, "--all", "--read-data"], env },
      restoredRoot: (target) => target,
    };
  }
  if (name === "restic") {
    // A cache of this run's own: nothing from an earlier run helps restic.
    const common = ["--repo", repo, "--cache-dir", join(work, "cache")];
    const env = { RESTIC_PASSWORD: PASSWORD };
    return {
      name,
      repo,
      // Repository format 2 with the default `auto` compression.
      init: { argv: ["restic", "init", ...common, "--repository-version", "2"], env },
      full: { argv: ["restic", "backup", ...common, nodeDir], env },
      incremental: { argv: ["restic", "backup", ...common, nodeDir], env },
      restore: (target) => ({ argv: ["restic", "restore", "latest", ...common, "--target", target], env }),
      verify: { argv: ["restic", "check", ...common, "--read-data"], env },
      restoredRoot: (target) => join(target, nodeDir),
    };
  }
  // Borg's cache, config and security directories all under the work directory: a fresh start.
  const env = { BORG_PASSPHRASE: PASSWORD, BORG_BASE_DIR: join(work, "home") };
  const create = (archive: string): Command => ({
    argv: ["borg", "create", "--compression", "zstd,3", `${repo}::${archive}`, nodeDir],
    env,
  });
  return {
    name,
    repo,
    init: { argv: ["borg", "init", "-e", "repokey-blake2", repo], env },
    full: create("full"),
    incremental: create("inc"),
    restore: (target) => ({ argv: ["borg", "extract", `${repo}::inc`], cwd: target, env }),
    verify: { argv: ["borg", "check", "--verify-data", repo], env },
    restoredRoot: (target) => join(target, nodeDir.replace(/^\/+/, "")),
  };
}
