/**
 * The repository commands: repo init / key, backup, snapshots, verify, restore, forget,
 * prune, copy. Each opens the repository, calls one library function and prints its result
 * for people (tables, a progress bar on a terminal) or as JSON with `--json`. The commands
 * live in one module per group; this one registers them in the order help lists them.
 */
import type { Command } from "commander";
import { registerBackupCommands } from "./backup-commands.js";
import { registerRepoCommands } from "./repo-commands.js";
import { registerRetentionCommands } from "./retention-commands.js";
import { registerVerifyRestoreCommands } from "./verify-restore-commands.js";

export { readPassword } from "./vault-kit.js";

/** Registers every repository command on `program`. */
export function registerVaultCommands(program: Command): void {
  registerRepoCommands(program);
  registerBackupCommands(program);
  registerVerifyRestoreCommands(program);
  registerRetentionCommands(program);
}
