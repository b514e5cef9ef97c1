/**
 * Named crash points for fault-injection tests. With CHAINVAULT_CRASH_AT=<name>[:<n>] in
 * the environment, the process kills itself with SIGKILL the n-th time (default 1st) it
 * reaches that point, leaving its files exactly as a power cut there would (short of the
 * page cache, which the fsync discipline already accounts for). Without the variable a
 * crash point costs one comparison.
 */
const spec = process.env.CHAINVAULT_CRASH_AT;
const [wanted, nth] = spec ? [spec.split(":")[0], Number(spec.split(":")[1] ?? "1")] : [undefined, 0];
let hits = 0;

export function crashPoint(name: string): void {
  if (name !== wanted) return;
  hits++;
  if (hits >= nth) process.kill(process.pid, "SIGKILL");
}

/**
 * Named failure points: with CHAINVAULT_FAIL_AT=<name>, the point throws as an I/O error
 * (a full disk, say) would, so tests can prove a failed write leaves nothing half-done.
 */
export function failPoint(name: string): void {
  if (process.env.CHAINVAULT_FAIL_AT === name) throw new Error(`Injected failure at ${name}`);
}
