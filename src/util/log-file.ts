/**
 * A log file that survives its disk filling up. Lines are appended synchronously (a node's
 * last lines must survive the crash that may follow them). A line that cannot be written (a
 * full disk, a removed directory) is dropped and counted instead of throwing: a logger that
 * throws takes the process down with it, which is how a full disk used to stop a node that
 * could otherwise keep serving its chain. The first failure prints one notice on standard
 * error; once a write succeeds again, the file first gets a line saying how many were lost.
 */
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { errorMessage } from "./errors.js";

/** pino's warn level, for the line that reports lost lines. */
const WARN_LEVEL = 40;

export class LogFile {
  private readonly fd: number;
  private dropped = 0;
  /** Why writing fails, while it does. */
  private failing: string | undefined;
  /** A line was cut short by the failure: the next write starts on a fresh line. */
  private torn = false;

  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, "a");
  }

  /** Appends one line (pino calls this with each serialised line, newline included). */
  write(line: string): void {
    let text = line;
    if (this.dropped > 0)
      text = `${JSON.stringify({
        level: WARN_LEVEL,
        time: Date.now(),
        msg: `${this.dropped} log lines were lost while ${this.path} could not be written (${this.failing})`,
      })}\n${text}`;
    if (this.torn) text = `\n${text}`;
    const bytes = Buffer.from(text);
    let off = 0;
    try {
      while (off < bytes.length) off += writeSync(this.fd, bytes, off);
      this.dropped = 0;
      this.failing = undefined;
      this.torn = false;
    } catch (err) {
      if (off > 0) this.torn = true;
      this.dropped++;
      if (this.failing === undefined) {
        this.failing = errorMessage(err);
        try {
          process.stderr.write(
            `chainvault: cannot write the log file ${this.path} (${this.failing}); log lines are dropped until it can be written again\n`,
          );
        } catch {
          // Standard error is gone too: nothing more to tell anyone.
        }
      }
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}
