#!/usr/bin/env node
/**
 * The `chainvault` command's entry. It starts what a repository command will wait for first
 * (the passphrase's key derivation, the crypto workers' boot: early-start.ts) and only then
 * loads the command line itself (cli.ts), so the two overlap.
 */
import { startEarly } from "./early-start.js";

void startEarly(process.argv);
await import("./cli.js");
