/** @module Flags, environment, `.env` and defaults resolved once into one readonly, validated Config. */
import { editDistance } from "./edit_distance.ts";
import { parseEnv } from "node:util";
import { Expected } from "./config_values.ts";
import { FIELDS, type Spec, SPECS } from "./config_table.ts";
import type { LogFormat, LogLevel } from "./log.ts";
import { HIDDEN } from "./redact.ts";

/**
 * Which answers get the footer: all, streamed ones only (a non-streamed answer is most often a
 * program's: a chat title, a commit message), or none. Points reach headers and usage in any case
 * but `off`.
 */
export type FooterMode = "on" | "stream" | "off";

/** The resolved configuration. Built once at startup; nothing reads env per request. */
export interface Config {
  readonly poeApiKey: string | null;
  /** The key's name on https://poe.com/api/keys (`api_key_name` in the points history), if set. */
  readonly poeApiKeyName: string | null;
  /** Without a trailing slash. */
  readonly poeBaseUrl: string;
  /** `MODELS_FILE` / `--models`; null means `./models.yaml` if it exists, else the embedded copy. */
  readonly modelsFile: string | null;
  readonly host: string;
  readonly port: number;
  readonly pointsCutoff: number;
  readonly pointsPerMessageWarn: number;
  readonly maxPointsPerMessage: number;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  readonly logBodies: boolean;
  readonly shutdownGraceSeconds: number;
  readonly maxBodyBytes: number;
  /** Memory large request bodies may take at once, in MiB; 0: no budget. */
  readonly maxBodyMemoryMb: number;
  readonly bodyTimeoutSeconds: number;
  readonly keepaliveSeconds: number;
  readonly upstreamRetries: number;
  readonly connectTimeoutSeconds: number;
  readonly firstByteTimeoutSeconds: number;
  readonly idleTimeoutSeconds: number;
  readonly mediaTimeoutSeconds: number;
  readonly usagePollSeconds: number;
  readonly footerWaitMs: number;
  readonly footer: FooterMode;
  readonly rateLimitPerMinute: number;
  readonly rateLimitBurst: number;
  /** Bits of a global IPv6 address that name its client (bucket and wrong keys); 128: all. */
  readonly rateLimitIpv6Prefix: number;
  readonly poeRateLimitPerMinute: number;
  readonly maxTrackedClients: number;
  readonly trustProxy: readonly string[];
  readonly proxyApiKeys: readonly string[];
  readonly proxyApiKeysFile: string | null;
  readonly corsOrigins: readonly string[];
  readonly allowedHosts: readonly string[];
  readonly dashboard: boolean;
}

/**
 * A configuration value that cannot be used. The message is one line naming the variable, the
 * value (secrets as `(hidden)`) and what is expected.
 */
export class ConfigError extends Error {
  /** @param message the whole one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Values given on the command line, as raw strings. An empty flag is an error, not "unset". */
export interface ConfigFlags {
  /** `--host`; overrides `HOST`. */
  host?: string;
  /** `--port`; overrides `PORT`. */
  port?: string;
  /** `--models`; overrides `MODELS_FILE`. */
  models?: string;
}

/**
 * Where {@linkcode resolveConfig} looks, highest precedence first. Empty env and `.env` values
 * count as unset.
 */
export interface ConfigSources {
  /** Command-line flags; win over everything. */
  flags?: ConfigFlags;
  /** The process environment, such as `Deno.env.toObject()`. */
  env?: Record<string, string | undefined>;
  /** Variables from a `.env` file, from {@linkcode parseDotenv}. */
  dotenv?: Record<string, string>;
  /** Path of that `.env` file, named in errors about its values. Default: `.env`. */
  dotenvPath?: string;
}

const MAX_SHOWN = 200;

function show(raw: string): string {
  return JSON.stringify(raw.length > MAX_SHOWN ? `${raw.slice(0, MAX_SHOWN)}…` : raw);
}

/** Finds the raw value of one variable, trimmed, with the label to name in errors. */
function lookup(
  spec: Spec<keyof Config>,
  sources: ConfigSources,
): { raw: string; label: string } | undefined {
  const flag = spec.flag ? sources.flags?.[spec.flag] : undefined;
  if (flag !== undefined) return { raw: flag.trim(), label: `--${spec.flag}` };
  const names = [spec.name, ...(spec.aliases ?? [])];
  const where = [
    { vars: sources.env, suffix: "" },
    { vars: sources.dotenv, suffix: ` in ${sources.dotenvPath ?? ".env"}` },
  ];
  for (const { vars, suffix } of where) {
    for (const name of names) {
      const raw = vars?.[name]?.trim();
      if (raw) return { raw, label: name + suffix };
    }
  }
  return undefined;
}

function resolveField(spec: Spec<keyof Config>, sources: ConfigSources): unknown {
  const found = lookup(spec, sources);
  if (found === undefined) return "fallback" in spec ? spec.fallback : spec.parse(spec.default);
  try {
    return spec.parse(found.raw);
  } catch (error) {
    if (!(error instanceof Expected)) throw error;
    const value = spec.secret ? "(hidden)" : show(error.entry ?? found.raw);
    throw new ConfigError(`Invalid ${found.label}: ${value} (expected ${error.message})`);
  }
}

/**
 * Resolves the configuration. Precedence: `flags`, then `env`, then `dotenv`, then defaults;
 * within one source `POE_API_KEY` wins over `POE_TOKEN`. Values are trimmed; empty env and
 * `.env` values count as unset. Returns a frozen object.
 *
 * @throws {ConfigError} on the first invalid value, e.g.
 * `Invalid PORT: "abc" (expected an integer from 0 to 65535)`; secrets are shown as `(hidden)`.
 */
export function resolveConfig(sources: ConfigSources): Config {
  const out: Record<string, unknown> = {};
  for (const field of FIELDS) {
    const value = resolveField(SPECS[field], sources);
    out[field] = Array.isArray(value) ? Object.freeze(value) : value;
  }
  // The name is shown in logs and by `poe-proxy check`: the key pasted there would be too.
  if (out.poeApiKeyName !== null && out.poeApiKeyName === out.poeApiKey) {
    throw new ConfigError(
      `Invalid POE_API_KEY_NAME: ${HIDDEN} (expected the key's name on https://poe.com/api/keys, not the key itself)`,
    );
  }
  return Object.freeze(out) as unknown as Config;
}

/**
 * Parses the text of a `.env` file with `parseEnv` from `node:util`: `KEY=value` lines, `#`
 * comments, single, double and backtick quotes, `export` prefixes. Lines it cannot read are
 * skipped.
 *
 * @param source the file's path, named in the error.
 * @throws {ConfigError} when the text is binary or cannot be parsed.
 */
export function parseDotenv(text: string, source: string): Record<string, string> {
  if (text.includes("\0")) throw new ConfigError(`Cannot read ${source}: not a text file`);
  let parsed: Record<string, string>;
  // Windows Notepad starts UTF-8 files with a byte-order mark, which would join the first name.
  if (text.startsWith("\uFEFF")) text = text.slice(1);
  try {
    parsed = parseEnv(text) as Record<string, string>;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(`Cannot read ${source}: ${reason.split("\n")[0]}`);
  }
  return { ...parsed };
}

/** Whether two texts of a setting mean the same (`08080` and `8080`), or are the same text. */
function sameSetting(field: keyof Config, a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const parse = SPECS[field].parse as (raw: string) => unknown;
    return JSON.stringify(parse(a)) === JSON.stringify(parse(b));
  } catch {
    return false;
  }
}

/**
 * Settings the `.env` file sets that the environment sets otherwise, and wins: `.env` edited
 * again and again, while an old `export` (or its alias, `POE_TOKEN`) in the shell holds. As
 * `NAME in .env (ALIAS in the environment)`; never a value.
 */
export function overriddenByEnvironment(
  dotenv: Record<string, string | undefined>,
  env: Record<string, string | undefined>,
): string[] {
  const out: string[] = [];
  for (const field of FIELDS) {
    const names = [SPECS[field].name, ...(SPECS[field].aliases ?? [])];
    const inFile = names.find((n) => dotenv[n]?.trim());
    const inEnv = names.find((n) => env[n]?.trim());
    if (inFile === undefined || inEnv === undefined) continue;
    if (sameSetting(field, dotenv[inFile]!.trim(), env[inEnv]!.trim())) continue;
    out.push(inFile === inEnv ? inFile : `${inFile} (by ${inEnv})`);
  }
  return out;
}

/**
 * Names in a `.env` file that are not known variables, sorted: likely typos worth a warning.
 * Not meant for the process environment, which holds many unrelated names.
 */
export function unknownVariables(vars: Record<string, string | undefined>): string[] {
  const known = new Set(FIELDS.flatMap((f) => [SPECS[f].name, ...(SPECS[f].aliases ?? [])]));
  return Object.keys(vars).filter((name) => !known.has(name)).sort();
}

/**
 * Line numbers (from 1) of a `.env` text that set nothing: not blank, not a comment, not
 * `NAME=value` (a YAML-style `NAME: value`, say). The parser skips them without a word.
 */
export function unreadableLines(text: string): number[] {
  const out: number[] = [];
  let open: string | null = null;
  text.replace(/^\uFEFF/, "").split(/\r?\n/).forEach((line, i) => {
    if (open !== null) {
      // Inside a quoted value over several lines, until its closing quote.
      if (line.includes(open)) open = null;
      return;
    }
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) return;
    const set = /^(?:export\s+)?[A-Za-z_][A-Za-z0-9_.]*\s*=\s*(["'`]?)(.*)$/.exec(trimmed);
    if (!set) {
      out.push(i + 1);
      return;
    }
    const quote = set[1];
    if (quote && !set[2].includes(quote)) open = quote;
  });
  return out;
}

/** The known setting nearest a name in `.env` that is none, or null (a case or a letter off). */
export function settingLike(name: string): string | null {
  let best: string | null = null;
  let bestDistance = 3;
  for (const field of FIELDS) {
    for (const known of [SPECS[field].name, ...(SPECS[field].aliases ?? [])]) {
      const distance = editDistance(name.toUpperCase(), known, bestDistance - 1);
      if (distance < bestDistance) {
        best = SPECS[field].name;
        bestDistance = distance;
      }
    }
  }
  return best;
}

/** What a {@linkcode missingKeyMessage} knows of the `.env` file it read. */
export interface DotenvFacts {
  /** The file's path, absolute. */
  path: string;
  /** Names in it that are no setting. */
  unknown: readonly string[];
  /** Lines of it that set nothing. */
  unreadable?: readonly number[];
}

/**
 * The message printed when `start` finds no Poe API key: where it looked, what in that `.env`
 * looks like a key written wrong, and, under Deno (not the compiled binary), the demo.
 */
export function missingKeyMessage(dotenv?: DotenvFacts, underDeno = true): string {
  const file = dotenv?.path ?? "a .env file in the working directory";
  const parts = [
    `No Poe API key: set POE_API_KEY in the environment or in ${file} (or name a file with ` +
    "--env-file); get a key at https://poe.com/api/keys.",
  ];
  const typos = (dotenv?.unknown ?? []).flatMap((name) => {
    const like = settingLike(name);
    return like === "POE_API_KEY" ? [name] : [];
  });
  if (typos.length > 0) {
    parts.push(`${dotenv!.path} sets ${typos.join(", ")}: did you mean POE_API_KEY?`);
  }
  const unreadable = dotenv?.unreadable ?? [];
  if (unreadable.length > 0) {
    parts.push(
      `${dotenv!.path} line${unreadable.length === 1 ? "" : "s"} ${
        unreadable.slice(0, 5).join(", ")
      } set nothing: write NAME=value.`,
    );
  }
  if (underDeno) parts.push("To try poe-proxy without a key, run `deno task demo`.");
  return parts.join(" ");
}

/**
 * Every field for `poe-proxy check`; the Poe key as "set"/"not set", client keys as a count: of
 * `inbound`, those of `PROXY_API_KEYS_FILE` included, when given.
 */
export function redactedSummary(
  config: Config,
  inbound = config.proxyApiKeys.length,
): Record<string, unknown> {
  return {
    ...config,
    poeApiKey: config.poeApiKey === null ? "not set" : "set",
    proxyApiKeys: inbound,
  };
}
