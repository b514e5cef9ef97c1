// Child process for vault-crash.test.ts: runs one repository operation so that the parent
// (or a crash point) can SIGKILL it part-way. Usage:
//   node --import tsx test/fault/_vault-child.ts <backup|prune|restore>
// then the job as one JSON line on stdin. Reading the job only once loaded lets the parent
// start the process early, while it still checks the previous one's leftovers. Prints `go`
// once the repository is open and the operation starts, then `done <ms>` when it finishes.
import { backup } from "../../src/vault/backup.js";
import { prune } from "../../src/vault/prune.js";
import { restore } from "../../src/vault/restore.js";
import { openRepo, sourceOf } from "./_vault-fixture.js";

interface Job {
  repo: string;
  /** backup: the source tree. */
  source?: string;
  /** backup: read every file, ignoring the parent. */
  force?: boolean;
  /** restore: the snapshot and where to put it. */
  snapshot?: string;
  target?: string;
}

function firstLine(): Promise<string> {
  return new Promise((resolve) => {
    let buf = "";
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (d: string) => {
      buf += d;
      if (buf.includes("\n")) resolve(buf.slice(0, buf.indexOf("\n")));
    });
    process.stdin.on("end", () => resolve(buf));
  });
}

const op = process.argv[2];
const line = await firstLine();
// The parent went away (or changed its mind) before sending a job.
if (line.trim() === "") process.exit(0);
process.stdin.destroy();
const job = JSON.parse(line) as Job;
const repo = await openRepo(job.repo);
process.stdout.write("go\n");
const t0 = performance.now();
if (op === "backup") await backup(repo, sourceOf(job.source!), { force: job.force === true });
else if (op === "prune") await prune(repo);
else if (op === "restore") await restore(repo, job.snapshot!, job.target!);
else throw new TypeError(`Unknown operation ${op}`);
process.stdout.write(`done ${Math.round(performance.now() - t0)}\n`);
