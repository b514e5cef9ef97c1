#!/usr/bin/env node
// Runs every test file under test/ with Node's own test runner and the tsx loader.
// Unit tests run first and fast; the process-heavy suites follow. Extra arguments are
// passed as path filters: `node scripts/run-tests.mjs test/unit`.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = find("test").filter((f) => filters.length === 0 || filters.some((x) => f.startsWith(x)));
if (files.length === 0) {
  console.error(`No test files matched ${filters.join(", ") || "test/"}`);
  process.exit(1);
}
const r = spawnSync(
  process.execPath,
  ["--import", "tsx", "--test", "--test-concurrency=1", "--test-reporter=spec", ...files],
  { stdio: "inherit", env: { ...process.env, NODE_ENV: "test" } },
);
process.exit(r.status ?? 1);
