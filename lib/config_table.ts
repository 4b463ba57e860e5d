/** @module The table of settings: each variable's name, flag, default, parser and description. */
import {
  apiKey,
  baseUrl,
  boolean,
  corsOrigins,
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
import type { Config, ConfigFlags } from "./config.ts";
import { MEMORY_PER_BODY_BYTE } from "./body_budget.ts";

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

/** How one variable is read: its name, default, parser and where else it may come from. */
export interface Spec<K extends keyof Config> {
  name: string;
  default: string;
  description: string;
  /** The value when unset; without it, `parse(default)`. */
  fallback?: Config[K];
  /** Gets the trimmed raw value; throws `Expected` (from `config_values.ts`). */
  parse: (raw: string) => Config[K];
  /** Other names read, in the same source, when `name` is unset there. */
  aliases?: readonly string[];
  flag?: keyof ConfigFlags;
  secret?: boolean;
}

/** Every variable, in table order. The mapped type makes the compiler check every field has one. */
export const SPECS: { readonly [K in keyof Config]: Spec<K> } = {
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
    description:
      "Base URL of Poe's API; a trailing /v1 (as Poe's docs give it), or /v1/chat/completions, is dropped, since chat calls add it and the Usage API is not under it.",
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
    description:
      "Log request bodies, and the bodies of answers not streamed, at debug level (may contain private data).",
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
  maxBodyMemoryMb: {
    name: "MAX_BODY_MEMORY_MB",
    default: "512",
    // Up to a TiB: counted in bytes, more would lose precision, and no machine needs it.
    parse: integer(0, 1024 * 1024),
    description:
      `Memory request bodies over 1 MiB may take at once (each counted as ${MEMORY_PER_BODY_BYTE} times its size); others wait their turn; 0 turns it off.`,
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
    description:
      "Interval of SSE keep-alive comments while the client gets nothing else (Poe's own comments are not relayed).",
  },
  upstreamRetries: {
    name: "UPSTREAM_RETRIES",
    default: "2",
    parse: integer(0, 10),
    description: "Retries of a failed Poe request before any of the answer reached the client.",
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
      "How long to wait for Poe's first piece of the answer (not a role chunk), and for an answer not streamed, as long again for its body.",
  },
  idleTimeoutSeconds: {
    name: "IDLE_TIMEOUT_SECONDS",
    default: "120",
    parse: seconds(true),
    description:
      "How long a Poe stream may stay silent once its answer began before it is abandoned.",
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
    description:
      "Chat requests per minute each client may send (other paths are not counted); 0 turns the limit off.",
  },
  rateLimitBurst: {
    name: "RATE_LIMIT_BURST",
    default: "20",
    parse: integer(1),
    description: "Requests a client may send at once before the per-minute rate applies.",
  },
  rateLimitIpv6Prefix: {
    name: "RATE_LIMIT_IPV6_PREFIX",
    default: "64",
    parse: integer(1, 128),
    description:
      "Bits of a global IPv6 address that name its client for rate limits and wrong keys; 128: the whole address. Loopback and LAN ones count alone.",
  },
  poeRateLimitPerMinute: {
    name: "POE_RATE_LIMIT_PER_MINUTE",
    default: "450",
    parse: number(false),
    description:
      "Calls per minute sent to Poe in total (Poe allows 500): chat calls, their retries, and the Usage API's reads for costs and balance (not the dashboard's), which chat calls then find taken (a 429 sooner); 0 turns it off.",
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
    description:
      "Comma-separated keys clients must send as Bearer tokens; empty means no auth. Read at startup only.",
  },
  proxyApiKeysFile: {
    name: "PROXY_API_KEYS_FILE",
    default: "",
    fallback: null,
    parse: filePath,
    description:
      "File with more client keys, one a line (`#` at a line's start or after a space starts a comment); re-read on reload (SIGHUP).",
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

/** The {@linkcode Config} fields, in table order. */
export const FIELDS = Object.keys(SPECS) as (keyof Config)[];

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
