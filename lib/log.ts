/** @module The only module that writes logs: levels, text or JSON lines, no colours off a TTY. */
// deno-lint-ignore-file no-console -- the one module allowed to write to the console

/** Log levels, least severe first. */
export type LogLevel = "debug" | "info" | "warn" | "error";
/** Output format of log lines. */
export type LogFormat = "text" | "json";
/** Structured fields of a log event. Values are printed as they are; never put keys here. */
export type LogFields = Record<string, unknown>;

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Minimum level written. Default: `info`. */
  level?: LogLevel;
  /** `text` (default) or `json`. */
  format?: LogFormat;
  /** Where lines go. Default: `console.log` for info and debug, `console.error` above. */
  write?: (line: string, level: LogLevel) => void;
  /** Clock for timestamps. Default: `Date.now`. */
  now?: () => number;
  /** Applied to every line before it is written: hides the Poe key wherever it came from. */
  redact?: (line: string) => string;
}

/** A structured logger: one line per event. */
export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  /** Whether a level would be written. */
  enabled(level: LogLevel): boolean;
}

/** Writes a line to standard output exactly as given (the listening line, CLI output). */
export function printLine(line: string): void {
  flushLines();
  console.log(line);
}

/** Writes a line to standard error exactly as given (startup failures, CLI errors). */
export function printError(line: string): void {
  flushLines();
  console.error(line);
}

/**
 * Info and debug lines not yet written. A write to standard output is a system call: one for each
 * request's line took a tenth of a busy proxy's CPU, so the lines of a few milliseconds go out in
 * one write. Warnings and errors are written at once, after the lines before them.
 */
const pending: string[] = [];
const FLUSH_MS = 20;
const FLUSH_LINES = 512;

function flushLines(): void {
  if (pending.length === 0) return;
  console.log(pending.join("\n"));
  pending.length = 0;
}

// Deno.exit and the end of the program dispatch `unload`; a crash dispatches one of the others
// first: the lines before it are not lost.
globalThis.addEventListener("unload", flushLines);
globalThis.addEventListener("error", flushLines);
globalThis.addEventListener("unhandledrejection", flushLines);

function defaultWrite(line: string, level: LogLevel): void {
  if (LEVELS[level] >= LEVELS.warn) {
    flushLines();
    console.error(line);
    return;
  }
  pending.push(line);
  if (pending.length >= FLUSH_LINES) flushLines();
  else if (pending.length === 1) setTimeout(flushLines, FLUSH_MS);
}

function formatValue(value: unknown): string {
  if (typeof value === "string") {
    return /[\s"=]/.test(value) || value === "" ? JSON.stringify(value) : value;
  }
  if (value instanceof Error) return JSON.stringify(value.message);
  return typeof value === "object" && value !== null ? JSON.stringify(value) : String(value);
}

/** Builds a logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const min = LEVELS[options.level ?? "info"];
  const format = options.format ?? "text";
  const write = options.write ?? defaultWrite;
  const now = options.now ?? Date.now;
  const redact = options.redact;
  const emit = (level: LogLevel, event: string, fields: LogFields = {}) => {
    if (LEVELS[level] < min) return;
    const time = new Date(now()).toISOString();
    let line: string;
    if (format === "json") {
      const clean: LogFields = {};
      for (const [k, v] of Object.entries(fields)) {
        if (v !== undefined) clean[k] = v instanceof Error ? v.message : v;
      }
      line = JSON.stringify({ time, level, event, ...clean });
    } else {
      let rest = "";
      for (const [k, v] of Object.entries(fields)) {
        if (v !== undefined) rest += ` ${k}=${formatValue(v)}`;
      }
      line = `${time} ${level.toUpperCase().padEnd(5)} ${event}${rest}`;
    }
    write(redact ? redact(line) : line, level);
  };
  return {
    debug: (e, f) => emit("debug", e, f),
    info: (e, f) => emit("info", e, f),
    warn: (e, f) => emit("warn", e, f),
    error: (e, f) => emit("error", e, f),
    enabled: (level) => LEVELS[level] >= min,
  };
}

/** A logger that keeps its lines in memory, for tests. */
export function memoryLogger(level: LogLevel = "debug"): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ level, write: (line) => lines.push(line) });
  return Object.assign(logger, { lines });
}
