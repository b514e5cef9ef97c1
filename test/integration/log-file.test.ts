// Goal: a log file on a full disk loses lines, never the process, and says afterwards how
// many it lost. Method: a child process logging through LogFile onto a real tmpfs of 64 KiB
// in a user and mount namespace of its own, filled with a file, then emptied.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

// Logs 5 lines, fills the disk, logs 20 lines (lost), frees the disk, logs 1 line; copies
// the log out of the namespace.
const CHILD = `
import { execSync } from "node:child_process";
import { LogFile } from "./src/util/log-file.ts";
const dir = process.env.MNT;
const log = new LogFile(dir + "/logs/node.log");
// 4 KiB lines: the file ends on a page boundary, so once the disk is full no write fits.
const line = (i) => {
  const base = JSON.stringify({ level: 30, msg: "line " + i, pad: "" });
  return JSON.stringify({ level: 30, msg: "line " + i, pad: "x".repeat(4095 - base.length) }) + "\\n";
};
for (let i = 0; i < 5; i++) log.write(line(i));
try { execSync("dd if=/dev/zero of=" + dir + "/filler bs=4k 2>/dev/null"); } catch {}
for (let i = 5; i < 25; i++) log.write(line(i));
execSync("rm " + dir + "/filler");
log.write(line(25));
log.close();
`;

test("a log file on a full disk drops lines without throwing, tells standard error once, and reports the loss when it can write again", () => {
  const dir = mkdtempSync(join(tmpdir(), "chainvault-log-file-"));
  try {
    const script = `set -eu; mkdir -p "$MNT"; mount -t tmpfs -o size=64k none "$MNT"
      "$NODE" --import tsx --input-type=module -e "$CHILD"
      cp "$MNT/logs/node.log" "$OUT/node.log"`;
    const r = spawnSync("unshare", ["--user", "--map-root-user", "--mount", "bash", "-c", script], {
      cwd: ROOT,
      env: { ...process.env, MNT: join(dir, "mnt"), OUT: dir, NODE: process.execPath, CHILD },
      encoding: "utf8",
    });
    assert.equal(r.status, 0, `the logging process failed: ${r.stderr}`);
    const notices = r.stderr.split("\n").filter((l) => l.includes("cannot write the log file"));
    assert.equal(notices.length, 1, r.stderr);
    assert.match(
      notices[0]!,
      /logs\/node\.log \(ENOSPC: no space left on device, write\); log lines are dropped/,
    );
    const lines = readFileSync(join(dir, "node.log"), "utf8").trim().split("\n");
    // Lines 0-4, the loss report, line 25.
    const parsed = lines
      .filter((l) => l.startsWith("{") && l.endsWith("}"))
      .map((l) => JSON.parse(l) as { msg: string });
    assert.deepEqual(
      parsed.slice(0, 5).map((p) => p.msg),
      ["line 0", "line 1", "line 2", "line 3", "line 4"],
    );
    assert.match(
      parsed.at(-2)!.msg,
      /^\d+ log lines were lost while .*node\.log could not be written \(ENOSPC/,
    );
    const lost = Number(parsed.at(-2)!.msg.split(" ")[0]);
    assert.equal(lost, 20);
    assert.equal(parsed.length, 7);
    assert.equal(parsed.at(-1)!.msg, "line 25");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
