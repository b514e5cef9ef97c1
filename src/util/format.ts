/** Human-readable sizes for messages and tables. */

/** `bytes` in MiB with one decimal: "12.3 MiB". */
export function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}
