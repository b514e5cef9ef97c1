#!/usr/bin/env node
/**
 * The `chainvault` command: a thin layer over the library. Expected failures print their
 * message and exit with a documented code (exit-codes.ts); unexpected ones print a stack.
 */
import { Command } from "commander";
import { registerVaultCommands } from "./vault-commands.js";

const program = new Command("chainvault")
  .description(
    "Disaster recovery for blockchain nodes: a reference chain, backups, ledger repair, key custody, runbooks",
  )
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
