/** @module poe-proxy's entry point: arguments, environment, files, signals and the server. */
import denoJson from "./deno.json" with { type: "json" };
import { resolve as resolvePath } from "node:path";
import {
  type Config,
  ConfigError,
  missingKeyMessage,
  overriddenByEnvironment,
  parseDotenv,
  redactedSummary,
  resolveConfig,
  unknownVariables,
  unreadableLines,
} from "./lib/config.ts";
import { createLogger, type Logger, printError, printLine } from "./lib/log.ts";
import { ModelsError } from "./lib/models_file.ts";
import { ApiKeys, inboundKeys } from "./lib/api_keys.ts";
import { Redactor } from "./lib/redact.ts";
import { createApp } from "./lib/app.ts";
import { errorResponse } from "./lib/errors.ts";
import { UsageApi } from "./lib/usage_api.ts";
import { fetchUsageReport, formatUsageReport } from "./lib/usage_report.ts";
import { formatRegistryTable, formatRemoteModels } from "./lib/model_listing.ts";
import { healthcheck } from "./lib/healthcheck.ts";
import { execStartFor, runAsFor, systemdUnit } from "./lib/systemd_unit.ts";
import { RegistryReloader } from "./lib/registry_reload.ts";
import { KeysReloader } from "./lib/keys_reload.ts";
import { type LoadedModels, loadRegistry } from "./lib/models_source.ts";
import { warnAtStartup } from "./lib/startup_warnings.ts";
import { type CommandLine, helpText, parseCommandLine, StartupError } from "./lib/command_line.ts";

const VERSION: string = denoJson.version;
/** The models file shipped inside the program (`deno compile --include models.yaml`). */
const EMBEDDED_MODELS = new URL("./models.yaml", import.meta.url);

/** The server could not listen: one line, exit code 1 (a retry may succeed). */
class ListenError extends Error {}

async function readDotenv(
  path: string | undefined,
): Promise<{ values: Record<string, string>; path: string; unreadable: number[] }> {
  const file = path ?? ".env";
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    if (path === undefined && err instanceof Deno.errors.NotFound) {
      return { values: {}, path: file, unreadable: [] };
    }
    throw new StartupError(
      `Cannot read --env-file ${JSON.stringify(file)}: ${(err as Error).message}`,
    );
  }
  return { values: parseDotenv(text, file), path: file, unreadable: unreadableLines(text) };
}

/** Run by `deno` itself (`deno task`), not as the compiled binary, which has no tasks. */
function underDeno(): boolean {
  return /(^|[\\/])deno(\.exe)?$/i.test(Deno.execPath());
}

/** Reads a models file for {@linkcode loadRegistry}: `file` null is the embedded copy. */
function readModelsText(file: string | null): Promise<string> {
  return file === null ? Deno.readTextFile(EMBEDDED_MODELS) : Deno.readTextFile(file);
}

async function readKeysFile(config: Config): Promise<string[]> {
  let fileText: string | null = null;
  if (config.proxyApiKeysFile !== null) {
    try {
      fileText = await Deno.readTextFile(config.proxyApiKeysFile);
    } catch (err) {
      throw new StartupError(
        `Cannot read PROXY_API_KEYS_FILE ${JSON.stringify(config.proxyApiKeysFile)}: ${
          (err as Error).message
        }`,
      );
    }
  }
  return inboundKeys(config, fileText);
}

function urlHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

async function serve(config: Config, loaded: LoadedModels, logger: Logger): Promise<void> {
  const registry = loaded.registry;
  const inbound = await readKeysFile(config);
  const keys = new ApiKeys(inbound);
  warnAtStartup({ config, inbound, registry, logger, dotenv: dotenvRead });
  let from = loaded.from;
  const models = new RegistryReloader({
    initial: registry,
    load: async () => {
      const next = await loadRegistry(config, readModelsText, from);
      from = next.from;
      return next;
    },
    logger,
    guards: config,
  });
  // PROXY_API_KEYS is read from the environment, which a running process cannot be given anew.
  const keysFile = config.proxyApiKeysFile === null
    ? null
    : new KeysReloader({ keys, load: () => readKeysFile(config), logger });
  // A SIGHUP that came while the files were read: the file may have changed after it was read.
  reload = () => {
    void models.reload();
    void keysFile?.reload();
  };
  if (reloadAsked) reload();
  const app = createApp({
    config,
    version: VERSION,
    registry: () => models.registry,
    logger,
    keys,
  });
  // Listened to before the listening line is printed: a stop sent right after it is graceful.
  let server: Deno.HttpServer | undefined;
  let stopping = false;
  /** Ends the requests still open (their lines now, or never), then the process. */
  const cutAndExit = () => {
    // Streams get an error event; a moment lets it reach them.
    const cut = app.cutOpen();
    setTimeout(() => Deno.exit(0), cut > 0 ? 100 : 0);
  };
  const stop = (signal: string) => {
    if (stopping) {
      // A second Ctrl+C (or signal): whoever sent it does not want to wait out the grace.
      logger.warn("second signal; cutting the requests still open", { signal });
      cutAndExit();
      return;
    }
    stopping = true;
    logger.info("shutting down", { signal, grace_seconds: config.shutdownGraceSeconds });
    const grace = setTimeout(() => {
      logger.warn("grace period over; cutting the requests still open", {});
      cutAndExit();
    }, config.shutdownGraceSeconds * 1000);
    (server?.shutdown() ?? Promise.resolve()).then(() => app.close()).then(() => {
      clearTimeout(grace);
      Deno.exit(0);
    });
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, () => stop(signal));
    } catch {
      // SIGTERM cannot be listened to on Windows; Ctrl+C (SIGINT) still works.
    }
  }
  try {
    server = listen();
  } catch (err) {
    await app.close();
    // Not a configuration error (exit 2): the port may be free again when systemd retries.
    throw new ListenError(
      `Cannot listen on ${urlHost(config.host)}:${config.port}: ${
        err instanceof Deno.errors.AddrInUse
          ? "the port is in use (another poe-proxy, or the old proxy still running?); set PORT"
          : (err as Error).message
      }`,
    );
  }
  function listen(): Deno.HttpServer {
    return Deno.serve({
      hostname: config.host,
      port: config.port,
      onListen({ hostname, port }) {
        // With JSON logs, standard output holds only JSON lines (`| jq`, log shippers); the
        // `started` event carries the URL there.
        (config.logFormat === "json" ? printError : printLine)(
          `poe-proxy ${VERSION} listening on http://${
            urlHost(hostname)
          }:${port} (${registry.size} models)`,
        );
        logger.info("started", {
          version: VERSION,
          url: `http://${urlHost(hostname)}:${port}`,
          models: registry.size,
          inbound_keys: keys.size,
          dashboard: config.dashboard,
          footer: config.footer,
          points_cutoff: config.pointsCutoff,
          max_points_per_message: config.maxPointsPerMessage,
          log_bodies: config.logBodies,
        });
        app.usage.poller.start();
      },
      handler: (req, info) => app.handler(req, { remoteAddr: info.remoteAddr as Deno.NetAddr }),
      // A failure the app did not answer itself (a bug): answered as JSON, and logged with keys
      // hidden, where Deno's own answer is plain text and its stack trace, on standard error,
      // quotes the URL whole.
      onError: (err) => {
        const text = err instanceof Error ? err.stack ?? err.message : String(err);
        logger.error("unhandled error", { error: keys.hide(text) });
        return errorResponse(err);
      },
    });
  }

  await server.finished;
}

/**
 * The `.env` file the last {@linkcode loadConfig} read (its path as given, and absolute), its
 * names that are no setting and its lines that set nothing.
 */
let dotenvRead:
  | {
    path: string;
    absolute: string;
    unknown: string[];
    unreadable: number[];
    overridden: string[];
  }
  | undefined;

/** The message for a missing Poe key, from what the `.env` file held. */
function noKeyMessage(): string {
  return missingKeyMessage(
    dotenvRead && { ...dotenvRead, path: dotenvRead.absolute },
    underDeno(),
  );
}

async function loadConfig(values: CommandLine): Promise<Config> {
  const dotenv = await readDotenv(values["env-file"]);
  const env = Deno.env.toObject();
  dotenvRead = {
    path: dotenv.path,
    absolute: resolvePath(dotenv.path),
    unknown: unknownVariables(dotenv.values),
    unreadable: dotenv.unreadable,
    overridden: overriddenByEnvironment(dotenv.values, env),
  };
  return resolveConfig({
    flags: { host: values.host, port: values.port, models: values.models },
    env,
    dotenv: dotenv.values,
    dotenvPath: dotenv.path,
  });
}

/**
 * Re-reads models.yaml and PROXY_API_KEYS_FILE, once the server has them; until then a SIGHUP is
 * remembered.
 */
let reload: (() => void) | null = null;
let reloadAsked = false;

/**
 * SIGHUP (systemctl reload) re-reads models.yaml and PROXY_API_KEYS_FILE; Windows has no SIGHUP.
 * Listened to as soon as `start` runs, before its files are read: a reload sent right after a
 * restart (a deploy that copies models.yaml, then reloads) must not end the process, whose default
 * for SIGHUP is to exit.
 */
function listenForReload(): void {
  if (Deno.build.os === "windows") return;
  Deno.addSignalListener("SIGHUP", () => {
    if (reload) reload();
    else reloadAsked = true;
  });
}

/** `healthcheck`: 0 when healthy, 1 otherwise, even on a configuration error (Docker reserves 2). */
async function runHealthcheck(values: CommandLine): Promise<number> {
  let config: Config;
  try {
    config = await loadConfig(values);
  } catch (err) {
    printError(`unhealthy: ${(err as Error).message}`);
    return 1;
  }
  const result = await healthcheck(config.host, config.port, { timeoutMs: 3000 });
  if (result.healthy) printLine(result.message);
  else printError(result.message);
  return result.healthy ? 0 : 1;
}

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(args);
  if (values.help) {
    printLine(helpText(VERSION));
    return 0;
  }
  if (values.version) {
    printLine(`poe-proxy ${VERSION}`);
    return 0;
  }
  const command = positionals[0] ?? "start";
  if (command === "start") listenForReload();
  if (command === "healthcheck") return await runHealthcheck(values);
  const config = await loadConfig(values);
  const poeKey = new Redactor([config.poeApiKey]);
  const logger = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    redact: (line) => poeKey.redact(line),
  });

  switch (command) {
    case "start": {
      if (!config.poeApiKey) throw new StartupError(noKeyMessage());
      const loaded = await loadRegistry(config, readModelsText);
      logger.debug("models loaded", { source: loaded.source, models: loaded.registry.size });
      await serve(config, loaded, logger);
      return 0;
    }
    case "models": {
      if (values.remote) {
        const response = await fetch(`${config.poeBaseUrl}/v1/models`, {
          signal: AbortSignal.timeout(15_000),
        }).catch((err) => {
          throw new StartupError(`Cannot reach Poe's GET /v1/models: ${(err as Error).message}`);
        });
        if (!response.ok) {
          await response.body?.cancel();
          throw new StartupError(
            `Poe's GET /v1/models answered ${response.status} at ${config.poeBaseUrl}/v1/models: ` +
              "check POE_BASE_URL",
          );
        }
        let catalogue: unknown;
        try {
          catalogue = await response.json();
        } catch {
          // A captive portal, a proxy's page, or a POE_BASE_URL that is not Poe's.
          throw new StartupError(
            `Poe's GET /v1/models did not answer JSON (content-type ${
              response.headers.get("content-type") ?? "none"
            }): check POE_BASE_URL`,
          );
        }
        printLine(formatRemoteModels(catalogue, values.json === true));
        return 0;
      }
      const { registry } = await loadRegistry(config, readModelsText);
      printLine(formatRegistryTable(registry, values.json === true));
      return 0;
    }
    case "check": {
      const { registry, source } = await loadRegistry(config, readModelsText);
      const inbound = await readKeysFile(config);
      printLine(
        `configuration ${
          config.poeApiKey ? "ok" : "incomplete"
        }; ${registry.size} models from ${source}`,
      );
      printLine(JSON.stringify(redactedSummary(config, inbound.length), null, 2));
      if (!config.poeApiKey) printLine(`warning: ${noKeyMessage()}`);
      // What `start` would warn about: typos in .env, risky keys, models.yaml's ignored entries.
      const warnings: string[] = [];
      warnAtStartup({
        config,
        inbound,
        registry,
        logger: {
          debug() {},
          info() {},
          error() {},
          warn: (event, fields) => warnings.push(String(fields?.message ?? event)),
          enabled: (level) => level === "warn",
        },
        dotenv: dotenvRead,
      });
      for (const warning of warnings) printLine(`warning: ${warning}`);
      // `start` would refuse to run: a script checking first must not see success.
      return config.poeApiKey ? 0 : 2;
    }
    case "usage": {
      if (!config.poeApiKey) throw new StartupError(noKeyMessage());
      const api = new UsageApi({
        baseUrl: config.poeBaseUrl,
        apiKey: config.poeApiKey,
        userAgent: `poe-proxy/${VERSION}`,
      });
      try {
        printLine(formatUsageReport(await fetchUsageReport(api), values.json === true));
      } catch (err) {
        throw new StartupError(`Cannot read Poe's usage: ${(err as Error).message}`);
      } finally {
        api.close();
      }
      return 0;
    }
    case "systemd-unit": {
      const exec = execStartFor(Deno.execPath(), import.meta.url);
      let user: number | undefined;
      if (exec.viaDeno) {
        const main = exec.argv.at(-1)!;
        const runAs = runAsFor(main, Deno.statSync(main).uid);
        for (const warning of runAs.warnings) printError(`warning: ${warning}`);
        user = runAs.user;
      }
      printLine(systemdUnit({
        execStart: exec.argv,
        viaDeno: exec.viaDeno,
        user,
        host: config.host,
        port: config.port,
        version: VERSION,
      }));
      return 0;
    }
    default:
      throw new StartupError(
        `Unknown command ${JSON.stringify(command)}. Run poe-proxy --help for the commands.`,
      );
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await run(Deno.args));
  } catch (err) {
    if (err instanceof StartupError || err instanceof ConfigError || err instanceof ModelsError) {
      printError(err.message);
      Deno.exit(2);
    }
    if (err instanceof ListenError) {
      printError(err.message);
      Deno.exit(1);
    }
    throw err;
  }
}
