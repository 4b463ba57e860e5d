/** @module Flags, environment, `.env` and defaults resolved once into one readonly, validated Config. */
import { parseEnv } from "node:util";
import {
  apiKey,
  baseUrl,
  boolean,
  corsOrigins,
  Expected,
  filePath,
  footerMode,
  host,
  hostName,
  integer,
  keyName,
  list,
  MAX_TIMER_MS,
  number,
  oneOf,
  proxyKey,
  seconds,
  trustProxy,
} from "./config_values.ts";
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

/** One row of the configuration table. */
export interface ConfigVariable {
  /** The environment variable. */
  name: string;
  /** The {@linkcode Config} field it sets. */
  field: keyof Config;
  /** The command-line flag that overrides it, such as `--port`, if any. */
  flag?: string;
  /** The default as shown to users; empty means unset. */
  default: string;
  /** What it does, in one sentence. */
  description: string;
}

interface Spec<K extends keyof Config> {
  name: string;
  default: string;
  description: string;
  /** The value when unset; without it, `parse(default)`. */
  fallback?: Config[K];
  /** Gets the trimmed raw value; throws {@linkcode Expected}. */
  parse: (raw: string) => Config[K];
  /** Other names read, in the same source, when `name` is unset there. */
  aliases?: readonly string[];
  flag?: keyof ConfigFlags;
  secret?: boolean;
}

/** Every variable, in table order. The mapped type makes the compiler check every field has one. */
const SPECS: { readonly [K in keyof Config]: Spec<K> } = {
  poeApiKey: {
    name: "POE_API_KEY",
    aliases: ["POE_TOKEN"],
    default: "",
    fallback: null,
    parse: apiKey,
    secret: true,
    description: "Poe API key from https://poe.com/api/keys (POE_TOKEN is read when it is unset).",
  },
  poeApiKeyName: {
    name: "POE_API_KEY_NAME",
    default: "",
    fallback: null,
    parse: keyName,
    description:
      "The key's name on https://poe.com/api/keys: points history entries of other names are never taken as this proxy's costs; unset, it is learnt.",
  },
  poeBaseUrl: {
    name: "POE_BASE_URL",
    default: "https://api.poe.com",
    parse: baseUrl,
    description: "Base URL of Poe's OpenAI-compatible API.",
  },
  modelsFile: {
    name: "MODELS_FILE",
    flag: "models",
    default: "",
    fallback: null,
    parse: filePath,
    description: "Model registry; unset means ./models.yaml if it exists, else the embedded copy.",
  },
  host: {
    name: "HOST",
    flag: "host",
    default: "127.0.0.1",
    parse: host,
    description: "Address to listen on; 0.0.0.0 listens on every interface.",
  },
  port: {
    name: "PORT",
    flag: "port",
    default: "8080",
    parse: integer(0, 65535),
    description: "Port to listen on; 0 picks a free port.",
  },
  pointsCutoff: {
    name: "POINTS_CUTOFF",
    default: "100000",
    parse: number(false),
    description: "Below this point balance, requests get a friendly paused message instead of Poe.",
  },
  pointsPerMessageWarn: {
    name: "POINTS_PER_MESSAGE_WARN",
    default: "5000",
    parse: number(false),
    description: "A message costing more points than this gets a warning with cheaper models.",
  },
  maxPointsPerMessage: {
    name: "MAX_POINTS_PER_MESSAGE",
    default: "0",
    parse: number(false),
    description: "Refuse requests estimated to cost more points than this; 0 turns it off.",
  },
  logLevel: {
    name: "LOG_LEVEL",
    default: "info",
    parse: oneOf(["debug", "info", "warn", "error"] as const),
    description: "Least severe log level written: debug, info, warn or error.",
  },
  logFormat: {
    name: "LOG_FORMAT",
    default: "text",
    parse: oneOf(["text", "json"] as const),
    description: "Log lines as text or json.",
  },
  logBodies: {
    name: "LOG_BODIES",
    default: "off",
    parse: boolean,
    description: "Log request and response bodies at debug level (may contain private data).",
  },
  shutdownGraceSeconds: {
    name: "SHUTDOWN_GRACE_SECONDS",
    default: "10",
    parse: seconds(false),
    description: "On SIGINT or SIGTERM, how long requests in flight may take to finish.",
  },
  maxBodyBytes: {
    name: "MAX_BODY_BYTES",
    default: "33554432",
    parse: integer(1),
    description: "Largest request body accepted, in bytes (32 MiB).",
  },
  bodyTimeoutSeconds: {
    name: "BODY_TIMEOUT_SECONDS",
    default: "30",
    parse: seconds(true),
    description:
      "How long a request body may pause; a body under 64 KiB must arrive within it in all.",
  },
  keepaliveSeconds: {
    name: "KEEPALIVE_SECONDS",
    default: "15",
    parse: seconds(true),
    description: "Interval of SSE keep-alive comments while a stream is quiet.",
  },
  upstreamRetries: {
    name: "UPSTREAM_RETRIES",
    default: "2",
    parse: integer(0, 10),
    description: "Retries of a failed Poe request before anything reached the client.",
  },
  connectTimeoutSeconds: {
    name: "CONNECT_TIMEOUT_SECONDS",
    default: "10",
    parse: seconds(true),
    description: "How long to wait for Poe to accept a connection.",
  },
  firstByteTimeoutSeconds: {
    name: "FIRST_BYTE_TIMEOUT_SECONDS",
    default: "300",
    parse: seconds(true),
    description:
      "How long to wait for Poe's first byte, and for an answer not streamed, as long again for its body; reasoning models can think for minutes.",
  },
  idleTimeoutSeconds: {
    name: "IDLE_TIMEOUT_SECONDS",
    default: "120",
    parse: seconds(true),
    description: "How long a Poe stream may stay silent before it is abandoned.",
  },
  mediaTimeoutSeconds: {
    name: "MEDIA_TIMEOUT_SECONDS",
    default: "900",
    parse: seconds(true),
    description:
      "Both of the above for image, video and audio models, which may work for minutes in silence.",
  },
  usagePollSeconds: {
    name: "USAGE_POLL_SECONDS",
    default: "60",
    parse: seconds(true),
    description: "Interval of the background poll of Poe's point balance.",
  },
  footerWaitMs: {
    name: "FOOTER_WAIT_MS",
    default: "1500",
    parse: integer(0, MAX_TIMER_MS),
    description: "How long the footer waits for Poe's points history to show the real cost.",
  },
  footer: {
    name: "FOOTER",
    default: "stream",
    parse: footerMode,
    description:
      "Append the usage footer (tokens, points, balance) to answers: on (all), stream (streamed ones: chats, not titles or commit messages) or off.",
  },
  rateLimitPerMinute: {
    name: "RATE_LIMIT_PER_MINUTE",
    default: "60",
    parse: number(false),
    description: "Requests per minute each client may send; 0 turns the limit off.",
  },
  rateLimitBurst: {
    name: "RATE_LIMIT_BURST",
    default: "20",
    parse: integer(1),
    description: "Requests a client may send at once before the per-minute rate applies.",
  },
  poeRateLimitPerMinute: {
    name: "POE_RATE_LIMIT_PER_MINUTE",
    default: "450",
    parse: number(false),
    description:
      "Chat calls per minute sent to Poe in total, retries included; 0 turns the limit off.",
  },
  maxTrackedClients: {
    name: "MAX_TRACKED_CLIENTS",
    default: "10000",
    parse: integer(1),
    description: "Most clients the rate limiter remembers at once.",
  },
  trustProxy: {
    name: "TRUST_PROXY",
    default: "",
    parse: trustProxy,
    description:
      "Comma-separated IP addresses or CIDR ranges of proxies whose X-Forwarded-For is believed.",
  },
  proxyApiKeys: {
    name: "PROXY_API_KEYS",
    default: "",
    parse: list(proxyKey),
    secret: true,
    description: "Comma-separated keys clients must send as Bearer tokens; empty means no auth.",
  },
  proxyApiKeysFile: {
    name: "PROXY_API_KEYS_FILE",
    default: "",
    fallback: null,
    parse: filePath,
    description:
      "File with more client keys, one a line (`#` at a line's start or after a space starts a comment).",
  },
  corsOrigins: {
    name: "CORS_ORIGINS",
    default: "",
    parse: corsOrigins,
    description:
      "Comma-separated browser origins allowed by CORS (https://chat.example.com, app://obsidian.md, chrome-extension://ID), or *; empty means none.",
  },
  allowedHosts: {
    name: "ALLOWED_HOSTS",
    default: "",
    parse: list(hostName),
    description:
      "Without inbound keys, host names browsers may reach the proxy by besides localhost and IP addresses (a DNS-rebinding guard), or *.",
  },
  dashboard: {
    name: "DASHBOARD",
    default: "on",
    parse: boolean,
    description: "Serve the usage dashboard.",
  },
};

const FIELDS = Object.keys(SPECS) as (keyof Config)[];

/** The configuration table for the README and `--help`: one row per variable, in a stable order. */
export const CONFIG_VARIABLES: readonly Readonly<ConfigVariable>[] = Object.freeze(
  FIELDS.map((field) => {
    const spec: Spec<keyof Config> = SPECS[field];
    const row: ConfigVariable = {
      name: spec.name,
      field,
      default: spec.default,
      description: spec.description,
    };
    if (spec.flag) row.flag = `--${spec.flag}`;
    return Object.freeze(row);
  }),
);

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

/**
 * Names in a `.env` file that are not known variables, sorted: likely typos worth a warning.
 * Not meant for the process environment, which holds many unrelated names.
 */
export function unknownVariables(vars: Record<string, string | undefined>): string[] {
  const known = new Set(FIELDS.flatMap((f) => [SPECS[f].name, ...(SPECS[f].aliases ?? [])]));
  return Object.keys(vars).filter((name) => !known.has(name)).sort();
}

/** The one-line message printed when `start` finds no Poe API key. */
export function missingKeyMessage(): string {
  return "No Poe API key: set POE_API_KEY in the environment or in a .env file in the working " +
    "directory (or name one with --env-file); get a key at https://poe.com/api/keys. " +
    "To try poe-proxy without a key, run `deno task demo`.";
}

/** Every field for `poe-proxy check`; the Poe key as "set"/"not set", client keys as a count. */
export function redactedSummary(config: Config): Record<string, unknown> {
  return {
    ...config,
    poeApiKey: config.poeApiKey === null ? "not set" : "set",
    proxyApiKeys: config.proxyApiKeys.length,
  };
}
