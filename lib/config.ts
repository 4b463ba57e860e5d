/** @module Flags, environment, `.env` and defaults resolved once into one readonly, validated Config. */
import type { LogFormat, LogLevel } from "./log.ts";

/** The resolved configuration. Built once at startup; nothing reads env per request. */
export interface Config {
  readonly poeApiKey: string | null;
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
  readonly usagePollSeconds: number;
  readonly footerWaitMs: number;
  readonly footer: boolean;
  readonly rateLimitPerMinute: number;
  readonly rateLimitBurst: number;
  readonly poeRateLimitPerMinute: number;
  readonly maxTrackedClients: number;
  readonly trustProxy: readonly string[];
  readonly proxyApiKeys: readonly string[];
  readonly proxyApiKeysFile: string | null;
  readonly corsOrigins: readonly string[];
  readonly dashboard: boolean;
}
