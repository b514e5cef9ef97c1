import { pino } from "pino";
import { LogFile } from "./log-file.js";

/** The structured logger every subsystem takes as a module: `logger.info({ height }, "Block imported")`. */
export type Logger = pino.Logger;

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** pino level name; "silent" turns logging off. */
  level?: string;
  /** Path of a file to append to; standard error when absent. */
  file?: string;
  /** Fields attached to every line, such as the node id. */
  base?: Record<string, unknown>;
}

/**
 * Creates a pino logger. File logs are written synchronously: a node logs a few lines a
 * second, and a recovery's log lines must survive the crash that follows them. Secrets are never passed to it; the redact list is a second
 * line of defence for the field names that could hold one.
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  // A file that cannot be written (a full disk) loses lines, never the process (log-file.ts).
  const destination = opts.file ? new LogFile(opts.file) : pino.destination(2);
  return pino(
    {
      level: opts.level ?? "info",
      base: opts.base ?? null,
      redact: {
        paths: ["token", "password", "privateKey", "*.token", "*.password", "*.privateKey"],
        censor: "[redacted]",
      },
    },
    destination,
  );
}

/** A logger that drops everything, for tests and library callers that pass none. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
