/**
 * The `chainvault` command (loaded by main.ts): a thin layer over the library. Expected failures print their
 * message and exit with a documented code (exit-codes.ts); unexpected ones print a stack.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { registerVaultCommands } from "./vault-commands.js";

/** The version in the package.json above this file (src/cli, dist/src/cli or the bundle's directory). */
function packageVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const p = join(dir, "package.json");
    if (existsSync(p))
      return (JSON.parse(readFileSync(p, "utf8")) as { version?: string }).version ?? "unknown";
  }
  return "unknown";
}

const program = new Command("chainvault")
  .description(
    "Disaster recovery for blockchain nodes: a reference chain, backups, ledger repair, key custody, runbooks",
  )
  .version(`chainvault ${packageVersion()}`, "-V, --version", "print the version and exit")
  .showHelpAfterError();

// Repository commands load only the vault; everything else (and help) loads the chain too.
const VAULT_COMMANDS = new Set([
  "repo",
  "backup",
  "snapshots",
  "verify",
  "restore",
  "forget",
  "prune",
  "copy",
]);
const first = process.argv[2];
if (first === undefined || !VAULT_COMMANDS.has(first))
  (await import("./chain-commands.js")).registerChainCommands(program);
registerVaultCommands(program);

await program.parseAsync(process.argv);
