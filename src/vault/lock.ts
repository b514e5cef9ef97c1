/**
 * Repository locks, as objects `locks/<random>`: backups, restores and verifies take a
 * shared lock, prune and key removal an exclusive one. A lock is refreshed while its holder
 * runs; one whose process is gone (same host) or whose refresh is older than
 * {@link LOCK_STALE_MS} is stale and removed by whoever finds it, so a crashed process
 * never blocks others for long.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { isAlive } from "../util/process.js";
import type { Backend } from "./backend.js";
import { VaultError, VaultErrorCode } from "./errors.js";

// 30 minutes: a holder refreshes every 5 minutes, so six missed refreshes mean it is gone
// (a host that died, or a process paused far longer than any repository operation).
export const LOCK_STALE_MS = 30 * 60 * 1000;
const LOCK_REFRESH_MS = 5 * 60 * 1000;

interface LockBody {
  host: string;
  pid: number;
  op: string;
  exclusive: boolean;
  createdAt: number;
  refreshedAt: number;
}

export interface LockOptions {
  exclusive: boolean;
  /** What holds the lock, for messages: "backup", "prune". */
  op: string;
  /** How long to wait for a conflicting lock to go away; 0 fails at once. */
  waitMs?: number;
}

function isStale(l: LockBody, nowMs: number): boolean {
  if (l.host === hostname() && !isAlive(l.pid)) return true;
  return nowMs - l.refreshedAt > LOCK_STALE_MS;
}

export class RepoLock {
  private timer: NodeJS.Timeout | undefined;
  private released = false;

  private constructor(
    private readonly backend: Backend,
    readonly name: string,
    private body: LockBody,
  ) {}

  /** Takes a lock, removing stale ones; waits up to `waitMs` for conflicting live ones. */
  static async acquire(backend: Backend, o: LockOptions): Promise<RepoLock> {
    const deadline = Date.now() + (o.waitMs ?? 0);
    const name = `locks/${randomBytes(16).toString("hex")}`;
    for (let attempt = 0; ; attempt++) {
      const now = Date.now();
      const body: LockBody = {
        host: hostname(),
        pid: process.pid,
        op: o.op,
        exclusive: o.exclusive,
        createdAt: now,
        refreshedAt: now,
      };
      await backend.put(name, Buffer.from(JSON.stringify(body)));
      const conflict = await findConflict(backend, name, o.exclusive);
      if (!conflict) {
        const lock = new RepoLock(backend, name, body);
        lock.timer = setInterval(() => void lock.refresh(), LOCK_REFRESH_MS);
        lock.timer.unref();
        return lock;
      }
      await backend.delete(name);
      if (Date.now() >= deadline)
        throw new VaultError(
          { code: VaultErrorCode.Locked, holder: conflict, location: backend.location },
          `Cannot ${o.op}: repository ${backend.location} is locked by ${conflict.exclusive ? "an exclusive" : "a"} ${conflict.op} of process ${conflict.pid} on ${conflict.host}, refreshed ${new Date(conflict.refreshedAt).toISOString()}; wait for it to finish (a lock whose process died is removed automatically)`,
        );
      // Jittered back-off: two processes that saw each other's locks must not retry in step.
      const delay = Math.min(2000, 50 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random());
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  private async refresh(): Promise<void> {
    if (this.released) return;
    this.body = { ...this.body, refreshedAt: Date.now() };
    await this.backend.put(this.name, Buffer.from(JSON.stringify(this.body))).catch(() => undefined);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    await this.backend.delete(this.name);
  }
}

async function findConflict(
  backend: Backend,
  own: string,
  exclusive: boolean,
): Promise<LockBody | undefined> {
  const now = Date.now();
  for (const o of await backend.list("locks/")) {
    if (o.name === own) continue;
    let l: LockBody;
    try {
      l = JSON.parse((await backend.get(o.name)).toString("utf8")) as LockBody;
    } catch {
      // Vanished between list and get (released), or a torn write of a dead process.
      continue;
    }
    if (typeof l.refreshedAt !== "number" || isStale(l, now)) {
      await backend.delete(o.name);
      continue;
    }
    if (exclusive || l.exclusive) return l;
  }
  return undefined;
}

/** Locks held in the repository, stale or not: for `repo unlock`-style inspection. */
export async function listLocks(backend: Backend): Promise<(LockBody & { name: string; stale: boolean })[]> {
  const now = Date.now();
  const out: (LockBody & { name: string; stale: boolean })[] = [];
  for (const o of await backend.list("locks/")) {
    try {
      const l = JSON.parse((await backend.get(o.name)).toString("utf8")) as LockBody;
      out.push({ ...l, name: o.name, stale: isStale(l, now) });
    } catch {
      // Released while listing.
    }
  }
  return out;
}
