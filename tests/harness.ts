/** @module Test harness: the proxy on a real port, wired to a fake Poe, with its logs captured. */
import { type AppDeps, type AppStats, createApp } from "../lib/app.ts";
import { type Config, resolveConfig } from "../lib/config.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import { Redactor } from "../lib/redact.ts";
import { ModelRegistry } from "../lib/models.ts";
import { FakePoe } from "./fake_poe.ts";

/** Every log line written by any proxy a test started; a test searches them for leaked keys. */
export const ALL_LOG_LINES: string[] = [];

/** The registry the tests use: the shipped models.yaml plus the fake's own model names. */
export async function testRegistry(): Promise<ModelRegistry> {
  const text = await Deno.readTextFile(
    new URL("./testdata/models_test_registry.yaml", import.meta.url),
  );
  return ModelRegistry.parse(text, "models_test_registry.yaml");
}

/** A resolved config for tests: the given variables over test defaults. */
export function testConfig(env: Record<string, string> = {}): Config {
  return resolveConfig({
    env: {
      POE_API_KEY: "test-poe-key",
      PORT: "0",
      RATE_LIMIT_PER_MINUTE: "0",
      POE_RATE_LIMIT_PER_MINUTE: "0",
      LOG_LEVEL: "debug",
      // Most tests look at non-streamed answers' footers; FOOTER=stream has tests of its own.
      FOOTER: "on",
      ...env,
    },
  });
}

/** A running proxy. */
export interface TestProxy extends AsyncDisposable {
  url: string;
  logs: string[];
  config: Config;
  /** The app's {@linkcode AppStats}. */
  stats(): AppStats;
  close(): Promise<void>;
}

/** Options of {@linkcode startProxy}. */
export interface StartProxyOptions {
  /** The fake Poe's base URL (sets POE_BASE_URL). */
  poeUrl?: string;
  /** Variables over the test defaults. */
  env?: Record<string, string>;
  /** Overrides of the app's dependencies. */
  deps?: Partial<AppDeps>;
  registry?: ModelRegistry;
}

/** Starts the proxy on 127.0.0.1 port 0 and returns its URL and captured log lines. */
export async function startProxy(options: StartProxyOptions = {}): Promise<TestProxy> {
  const env = { ...(options.poeUrl ? { POE_BASE_URL: options.poeUrl } : {}), ...options.env };
  const config = testConfig(env);
  const logs: string[] = [];
  const poeKey = new Redactor([config.poeApiKey]);
  const logger: Logger = createLogger({
    level: config.logLevel,
    redact: (line) => poeKey.redact(line),
    write: (line) => {
      logs.push(line);
      ALL_LOG_LINES.push(line);
    },
  });
  const registry = options.registry ?? await testRegistry();
  const app = createApp({
    config,
    version: "test",
    registry: () => registry,
    logger,
    ...options.deps,
  });
  const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: (addr) => resolve(addr as Deno.NetAddr),
    handler: (req, info) => app.handler(req, { remoteAddr: info.remoteAddr as Deno.NetAddr }),
  });
  const addr = await promise;
  const close = async () => {
    await (app as { close?: () => Promise<void> }).close?.();
    await server.shutdown();
  };
  return {
    url: `http://127.0.0.1:${addr.port}`,
    logs,
    config,
    stats: () => app.stats(),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * A fake Poe and a proxy wired to it, closed together; `FOOTER` is off unless `env` sets it, so
 * answers pass through byte for byte. `deps` replace the proxy's own (a counter a test reads).
 */
export async function startFakeAndProxy(
  env: Record<string, string> = {},
  deps?: Partial<AppDeps>,
) {
  const fake = await FakePoe.start();
  const proxy = await startProxy({ poeUrl: fake.url, env: { FOOTER: "off", ...env }, deps });
  return {
    fake,
    proxy,
    async [Symbol.asyncDispose]() {
      await proxy.close();
      await fake.close();
    },
  };
}
