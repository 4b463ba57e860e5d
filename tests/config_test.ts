/** @module Tests of lib/config.ts: precedence, defaults, validation messages, `.env` parsing. */
import assert from "node:assert/strict";
import {
  ConfigError,
  missingKeyMessage,
  overriddenByEnvironment,
  parseDotenv,
  redactedSummary,
  resolveConfig,
  unknownVariables,
  unreadableLines,
} from "../lib/config.ts";
import { CONFIG_VARIABLES } from "../lib/config_table.ts";

const DEFAULTS = {
  poeApiKey: null,
  poeApiKeyName: null,
  poeBaseUrl: "https://api.poe.com",
  modelsFile: null,
  host: "127.0.0.1",
  port: 8080,
  pointsCutoff: 100000,
  pointsPerMessageWarn: 5000,
  maxPointsPerMessage: 0,
  logLevel: "info",
  logFormat: "text",
  logBodies: false,
  shutdownGraceSeconds: 10,
  maxBodyBytes: 33554432,
  maxBodyMemoryMb: 512,
  bodyTimeoutSeconds: 30,
  keepaliveSeconds: 15,
  upstreamRetries: 2,
  connectTimeoutSeconds: 10,
  firstByteTimeoutSeconds: 300,
  idleTimeoutSeconds: 120,
  mediaTimeoutSeconds: 900,
  usagePollSeconds: 60,
  footerWaitMs: 1500,
  footer: "stream",
  rateLimitPerMinute: 60,
  rateLimitBurst: 20,
  rateLimitIpv6Prefix: 64,
  poeRateLimitPerMinute: 450,
  maxTrackedClients: 10000,
  trustProxy: [],
  proxyApiKeys: [],
  proxyApiKeysFile: null,
  corsOrigins: [],
  allowedHosts: [],
  dashboard: true,
};

/** The message of the ConfigError that resolving `env` throws. */
function errorFor(env: Record<string, string>): string {
  try {
    resolveConfig({ env });
  } catch (error) {
    assert.ok(error instanceof ConfigError, `not a ConfigError: ${error}`);
    assert.equal(error.name, "ConfigError");
    assert.ok(!error.message.includes("\n"), "message is one line");
    return error.message;
  }
  assert.fail(`no error for ${JSON.stringify(env)}`);
}

Deno.test("resolveConfig: every default with no sources", () => {
  assert.deepEqual({ ...resolveConfig({}) }, DEFAULTS);
  assert.deepEqual({ ...resolveConfig({ flags: {}, env: {}, dotenv: {} }) }, DEFAULTS);
});

Deno.test("resolveConfig: flags win over env, env over .env, .env over defaults", () => {
  const config = resolveConfig({
    flags: { host: "0.0.0.0", port: "9000", models: "flag.yaml" },
    env: { HOST: "10.0.0.1", PORT: "9100", MODELS_FILE: "env.yaml", LOG_LEVEL: "debug" },
    dotenv: {
      HOST: "10.0.0.2",
      PORT: "9200",
      LOG_LEVEL: "warn",
      POINTS_CUTOFF: "5",
      FOOTER: "off",
    },
  });
  assert.equal(config.host, "0.0.0.0");
  assert.equal(config.port, 9000);
  assert.equal(config.modelsFile, "flag.yaml");
  assert.equal(config.logLevel, "debug");
  assert.equal(config.pointsCutoff, 5);
  assert.equal(config.footer, "off");
  assert.equal(config.shutdownGraceSeconds, 10);
});

Deno.test("resolveConfig: env over .env when no flag is given", () => {
  const config = resolveConfig({
    env: { PORT: "9100", MODELS_FILE: "env.yaml" },
    dotenv: { PORT: "9200", MODELS_FILE: "dot.yaml", HOST: "::1" },
  });
  assert.equal(config.port, 9100);
  assert.equal(config.modelsFile, "env.yaml");
  assert.equal(config.host, "::1");
});

Deno.test("resolveConfig: empty and blank env values count as unset", () => {
  const config = resolveConfig({
    env: { PORT: "", HOST: "   ", POE_API_KEY: "" },
    dotenv: { PORT: "9200", POE_API_KEY: "  " },
  });
  assert.equal(config.port, 9200);
  assert.equal(config.host, "127.0.0.1");
  assert.equal(config.poeApiKey, null);
});

Deno.test("resolveConfig: POE_TOKEN is the fallback, POE_API_KEY wins, env beats .env", () => {
  assert.equal(resolveConfig({ env: { POE_TOKEN: " tok " } }).poeApiKey, "tok");
  assert.equal(resolveConfig({ env: { POE_TOKEN: "tok", POE_API_KEY: "key" } }).poeApiKey, "key");
  assert.equal(resolveConfig({ dotenv: { POE_TOKEN: "tok" } }).poeApiKey, "tok");
  assert.equal(
    resolveConfig({ env: { POE_TOKEN: "env-tok" }, dotenv: { POE_API_KEY: "dot-key" } }).poeApiKey,
    "env-tok",
  );
});

Deno.test("resolveConfig: POE_API_KEY_NAME is the key's name as typed (spaces inside kept), unset when empty", () => {
  assert.equal(resolveConfig({}).poeApiKeyName, null);
  assert.equal(resolveConfig({ env: { POE_API_KEY_NAME: "   " } }).poeApiKeyName, null);
  assert.equal(
    resolveConfig({ env: { POE_API_KEY_NAME: " my laptop key " } }).poeApiKeyName,
    "my laptop key",
  );
  assert.equal(
    resolveConfig({ env: { POE_API_KEY_NAME: "env" }, dotenv: { POE_API_KEY_NAME: "dot" } })
      .poeApiKeyName,
    "env",
  );
  assert.equal(resolveConfig({ dotenv: { POE_API_KEY_NAME: "dot" } }).poeApiKeyName, "dot");
  // The key pasted as its name would be shown: refused, without echoing it.
  assert.throws(
    () =>
      resolveConfig({
        env: { POE_API_KEY: "sk-secret-1" },
        dotenv: { POE_API_KEY_NAME: "sk-secret-1" },
      }),
    (e: Error) =>
      e instanceof ConfigError && !e.message.includes("sk-secret") &&
      e.message.startsWith("Invalid POE_API_KEY_NAME: (hidden) (expected the key's name"),
  );
  // A name is a label, not a secret: shown in errors and in `poe-proxy check`.
  assert.equal(
    redactedSummary(resolveConfig({ env: { POE_API_KEY_NAME: "k" } })).poeApiKeyName,
    "k",
  );
});

Deno.test("resolveConfig: trims values and parses each kind", () => {
  const config = resolveConfig({
    env: {
      PORT: " 0 ",
      POE_BASE_URL: " http://localhost:8000/poe// ",
      POINTS_CUTOFF: "2.5",
      LOG_LEVEL: "WARN",
      LOG_FORMAT: "Json",
      LOG_BODIES: "Yes",
      FOOTER: "0",
      DASHBOARD: "FALSE",
      UPSTREAM_RETRIES: "10",
      TRUST_PROXY: " 127.0.0.1 , ,10.0.0.0/8, ::ffff:10.1.2.3 ",
      HOST: "my-server.lan",
      PROXY_API_KEYS: "a, b ,,c",
      PROXY_API_KEYS_FILE: "keys.txt",
      CORS_ORIGINS: "https://Example.com/, http://localhost:3000",
    },
  });
  assert.equal(config.port, 0);
  assert.equal(config.poeBaseUrl, "http://localhost:8000/poe");
  assert.equal(config.pointsCutoff, 2.5);
  assert.equal(config.logLevel, "warn");
  assert.equal(config.logFormat, "json");
  assert.equal(config.logBodies, true);
  assert.equal(config.footer, "off");
  assert.equal(config.dashboard, false);
  assert.equal(config.upstreamRetries, 10);
  assert.deepEqual(config.trustProxy, ["127.0.0.1", "10.0.0.0/8", "10.1.2.3"]);
  assert.equal(config.host, "my-server.lan");
  assert.deepEqual(config.proxyApiKeys, ["a", "b", "c"]);
  assert.equal(config.proxyApiKeysFile, "keys.txt");
  assert.deepEqual(config.corsOrigins, ["https://example.com", "http://localhost:3000"]);
});

Deno.test("resolveConfig: error messages name variable, value and expectation", () => {
  const cases: [Record<string, string>, string][] = [
    [{ PORT: "abc" }, `Invalid PORT: "abc" (expected an integer from 0 to 65535)`],
    [{ PORT: "70000" }, `Invalid PORT: "70000" (expected an integer from 0 to 65535)`],
    [{ PORT: "80.5" }, `Invalid PORT: "80.5" (expected an integer from 0 to 65535)`],
    [{ POINTS_CUTOFF: "-1" }, `Invalid POINTS_CUTOFF: "-1" (expected a non-negative number)`],
    [
      { POINTS_PER_MESSAGE_WARN: "10k" },
      `Invalid POINTS_PER_MESSAGE_WARN: "10k" (expected a non-negative number)`,
    ],
    [
      { MAX_POINTS_PER_MESSAGE: "NaN" },
      `Invalid MAX_POINTS_PER_MESSAGE: "NaN" (expected a non-negative number)`,
    ],
    [
      { POE_BASE_URL: "ftp://api.poe.com" },
      `Invalid POE_BASE_URL: "ftp://api.poe.com" (expected an http or https URL)`,
    ],
    [
      { POE_BASE_URL: "not a url" },
      `Invalid POE_BASE_URL: "not a url" (expected an http or https URL)`,
    ],
    [
      { FOOTER: "maybe" },
      `Invalid FOOTER: "maybe" (expected on, stream or off)`,
    ],
    [
      { LOG_LEVEL: "verbose" },
      `Invalid LOG_LEVEL: "verbose" (expected one of debug, info, warn, error)`,
    ],
    [{ LOG_FORMAT: "xml" }, `Invalid LOG_FORMAT: "xml" (expected one of text, json)`],
    [
      { CORS_ORIGINS: "https://ok.com, example.com" },
      `Invalid CORS_ORIGINS: "example.com" (expected "*" or comma-separated origins like https://example.com or app://obsidian.md)`,
    ],
    [
      { CORS_ORIGINS: "https://example.com/app" },
      `Invalid CORS_ORIGINS: "https://example.com/app" (expected "*" or comma-separated origins like https://example.com or app://obsidian.md)`,
    ],
    // A timer above 2^31 - 1 ms fires at once: a poll every 35 days would be a flood.
    [
      { USAGE_POLL_SECONDS: "3000000" },
      `Invalid USAGE_POLL_SECONDS: "3000000" (expected a positive number up to 2147483)`,
    ],
    [
      { SHUTDOWN_GRACE_SECONDS: "2147484" },
      `Invalid SHUTDOWN_GRACE_SECONDS: "2147484" (expected a non-negative number up to 2147483)`,
    ],
    [
      { FOOTER_WAIT_MS: "2147483648" },
      `Invalid FOOTER_WAIT_MS: "2147483648" (expected an integer from 0 to 2147483647)`,
    ],
    [{ RATE_LIMIT_BURST: "0" }, `Invalid RATE_LIMIT_BURST: "0" (expected a positive integer)`],
    [
      { RATE_LIMIT_IPV6_PREFIX: "0" },
      `Invalid RATE_LIMIT_IPV6_PREFIX: "0" (expected an integer from 1 to 128)`,
    ],
    [
      { RATE_LIMIT_IPV6_PREFIX: "129" },
      `Invalid RATE_LIMIT_IPV6_PREFIX: "129" (expected an integer from 1 to 128)`,
    ],
    [
      { RATE_LIMIT_IPV6_PREFIX: "/64" },
      `Invalid RATE_LIMIT_IPV6_PREFIX: "/64" (expected an integer from 1 to 128)`,
    ],
    [
      { TRUST_PROXY: "127.0.0.1, localhost" },
      `Invalid TRUST_PROXY: "localhost" (expected comma-separated IP addresses or CIDR ranges (not host names))`,
    ],
    [
      { TRUST_PROXY: "10.0.0.0/33" },
      `Invalid TRUST_PROXY: "10.0.0.0/33" (expected comma-separated IP addresses or CIDR ranges (not host names))`,
    ],
    [
      { SHUTDOWN_GRACE_SECONDS: "-5" },
      `Invalid SHUTDOWN_GRACE_SECONDS: "-5" (expected a non-negative number up to 2147483)`,
    ],
    [{ MAX_BODY_BYTES: "0" }, `Invalid MAX_BODY_BYTES: "0" (expected a positive integer)`],
    [
      { MAX_BODY_MEMORY_MB: "-1" },
      `Invalid MAX_BODY_MEMORY_MB: "-1" (expected an integer from 0 to 1048576)`,
    ],
    [
      { IDLE_TIMEOUT_SECONDS: "0" },
      `Invalid IDLE_TIMEOUT_SECONDS: "0" (expected a positive number up to 2147483)`,
    ],
    [
      { UPSTREAM_RETRIES: "11" },
      `Invalid UPSTREAM_RETRIES: "11" (expected an integer from 0 to 10)`,
    ],
    [
      { FOOTER_WAIT_MS: "1.5" },
      `Invalid FOOTER_WAIT_MS: "1.5" (expected an integer from 0 to 2147483647)`,
    ],
    [
      { RATE_LIMIT_PER_MINUTE: "Infinity" },
      `Invalid RATE_LIMIT_PER_MINUTE: "Infinity" (expected a non-negative number)`,
    ],
    [
      { MAX_TRACKED_CLIENTS: "0x10" },
      `Invalid MAX_TRACKED_CLIENTS: "0x10" (expected a positive integer)`,
    ],
    [
      { POE_API_KEY_NAME: "a\tb" },
      `Invalid POE_API_KEY_NAME: "a\\tb" (expected a key name without control characters)`,
    ],
    [
      { TRUST_PROXY: "10.0.0.1 10.0.0.2" },
      `Invalid TRUST_PROXY: "10.0.0.1 10.0.0.2" (expected comma-separated IP addresses or CIDR ranges (not host names))`,
    ],
  ];
  for (const [env, message] of cases) assert.equal(errorFor(env), message);
});

Deno.test("resolveConfig: errors name the flag or the .env file the value came from", () => {
  assert.throws(
    () => resolveConfig({ flags: { port: "x" }, env: { PORT: "1" } }),
    new ConfigError(`Invalid --port: "x" (expected an integer from 0 to 65535)`),
  );
  assert.throws(
    () => resolveConfig({ flags: { host: "" } }),
    new ConfigError(
      `Invalid --host: "" (expected a host name or IP address, without a port (PORT sets that))`,
    ),
  );
  assert.throws(
    () => resolveConfig({ flags: { models: " " } }),
    new ConfigError(`Invalid --models: "" (expected a file path)`),
  );
  assert.throws(
    () => resolveConfig({ dotenv: { PORT: "-1" }, dotenvPath: "/srv/app/.env" }),
    new ConfigError(`Invalid PORT in /srv/app/.env: "-1" (expected an integer from 0 to 65535)`),
  );
  assert.throws(
    () => resolveConfig({ dotenv: { LOG_BODIES: "sure" } }),
    new ConfigError(
      `Invalid LOG_BODIES in .env: "sure" (expected on or off (or true/false, yes/no, 1/0))`,
    ),
  );
});

Deno.test("resolveConfig: error values are shown as one quoted line, cut when long", () => {
  const message = errorFor({ LOG_LEVEL: `a\nb${"x".repeat(500)}` });
  assert.ok(message.startsWith(`Invalid LOG_LEVEL: "a\\nbxxx`));
  assert.ok(message.length < 300);
});

Deno.test("resolveConfig: secrets are never echoed in errors", () => {
  const secret = "sk-super secret";
  assert.equal(
    errorFor({ POE_API_KEY: secret }),
    "Invalid POE_API_KEY: (hidden) (expected a key of printable ASCII, without spaces, control, invisible or non-ASCII characters (paste it again))",
  );
  assert.equal(
    errorFor({ POE_TOKEN: secret }),
    "Invalid POE_TOKEN: (hidden) (expected a key of printable ASCII, without spaces, control, invisible or non-ASCII characters (paste it again))",
  );
  assert.equal(
    errorFor({ PROXY_API_KEYS: `ok-key, ${secret}` }),
    "Invalid PROXY_API_KEYS: (hidden) (expected comma-separated keys of printable ASCII, without spaces, control, invisible or non-ASCII characters)",
  );
  const envs: Record<string, string>[] = [{ POE_API_KEY: secret }, { PROXY_API_KEYS: secret }];
  for (const env of envs) {
    const message = errorFor(env);
    assert.ok(!message.includes("secret") && !message.includes("sk-"), message);
  }
});

Deno.test("resolveConfig: the result and its lists are frozen", () => {
  const config = resolveConfig({ env: { PROXY_API_KEYS: "a,b", CORS_ORIGINS: "*" } });
  assert.ok(Object.isFrozen(config));
  assert.ok(Object.isFrozen(config.proxyApiKeys));
  assert.ok(Object.isFrozen(config.corsOrigins));
  assert.ok(Object.isFrozen(config.trustProxy));
  assert.throws(() => {
    (config as { port: number }).port = 1;
  }, TypeError);
});

Deno.test("parseDotenv: quotes, comments, export lines, blanks", () => {
  const text = [
    "# a comment",
    "",
    "export POE_API_KEY=abc123",
    `PORT="9000" # trailing comment`,
    "HOST='0.0.0.0'",
    `QUOTED_HASH="a # b"`,
    'MULTI="line1\\nline2"',
    "PLAIN = spaced value ",
    "EMPTY=",
  ].join("\n");
  const vars = parseDotenv(text, ".env");
  assert.deepEqual(vars, {
    POE_API_KEY: "abc123",
    PORT: "9000",
    HOST: "0.0.0.0",
    QUOTED_HASH: "a # b",
    MULTI: "line1\nline2",
    PLAIN: "spaced value",
    EMPTY: "",
  });
  assert.equal(Object.getPrototypeOf(vars), Object.prototype);
  const config = resolveConfig({ dotenv: vars });
  assert.equal(config.poeApiKey, "abc123");
  assert.equal(config.port, 9000);
});

Deno.test("parseDotenv: a UTF-8 byte-order mark (Windows Notepad) does not hide the first name", () => {
  assert.deepEqual(parseDotenv("\uFEFFPOE_API_KEY=abc\r\nPORT=0\r\n", ".env"), {
    POE_API_KEY: "abc",
    PORT: "0",
  });
});

Deno.test("parseDotenv: empty text gives no variables", () => {
  assert.deepEqual(parseDotenv("", ".env"), {});
  assert.deepEqual(parseDotenv("# only a comment\n\n", ".env"), {});
});

Deno.test("parseDotenv: binary text is an error naming the file", () => {
  assert.throws(
    () => parseDotenv("PORT=1\n\0\x01\x02", "/tmp/app.env"),
    new ConfigError("Cannot read /tmp/app.env: not a text file"),
  );
});

Deno.test("unknownVariables: flags likely typos in a .env file", () => {
  assert.deepEqual(unknownVariables({ PORT: "1", PROT: "2", POE_TOKEN: "t", LOGLEVEL: "x" }), [
    "LOGLEVEL",
    "PROT",
  ]);
});

Deno.test("missingKeyMessage: the .env path, a key written wrong, lines that set nothing; the demo only under Deno", () => {
  const message = missingKeyMessage(
    { path: "/srv/poe/.env", unknown: ["POE_APIKEY", "PROT", "poe_api_key"], unreadable: [3, 7] },
    false,
  );
  assert.match(message, /in \/srv\/poe\/\.env \(or name a file with --env-file\)/);
  assert.match(
    message,
    /\/srv\/poe\/\.env sets POE_APIKEY, poe_api_key: did you mean POE_API_KEY\?/,
  );
  assert.match(message, /lines 3, 7 set nothing: write NAME=value\./);
  assert.doesNotMatch(message, /demo/);
  assert.match(missingKeyMessage(), /deno task demo/);
});

Deno.test("overriddenByEnvironment: names settings the environment sets otherwise, not the same value written otherwise", () => {
  assert.deepEqual(
    overriddenByEnvironment(
      { POE_API_KEY: "new", PORT: "8080", POE_BASE_URL: "https://api.poe.com/v1/chat/completions" },
      { POE_TOKEN: "old", PORT: "08080", POE_BASE_URL: "https://api.poe.com/v1" },
    ),
    ["POE_API_KEY (by POE_TOKEN)"],
  );
  assert.deepEqual(overriddenByEnvironment({ PORT: "1" }, { PORT: "2" }), ["PORT"]);
});

Deno.test("unreadableLines: what the .env parser skips without a word", () => {
  const text = [
    "# comment",
    "",
    "POE_API_KEY: yaml-style",
    "export PORT=8080",
    'LOG_LEVEL="multi',
    "line value",
    'done"',
    "  HOST = 0.0.0.0",
    "just words",
    "X.Y=1",
  ].join("\n");
  assert.deepEqual(unreadableLines(text), [3, 9]);
  assert.deepEqual(unreadableLines("\uFEFFPOE_API_KEY=k\r\nPORT=1\r\n"), []);
});

Deno.test("missingKeyMessage: says where to put the key and how to run without one", () => {
  const message = missingKeyMessage();
  for (
    const part of [
      "POE_API_KEY",
      ".env",
      "--env-file",
      "https://poe.com/api/keys",
      "deno task demo",
    ]
  ) {
    assert.ok(message.includes(part), part);
  }
  assert.ok(!message.includes("\n"));
});

Deno.test("redactedSummary: every field, secrets replaced", () => {
  const config = resolveConfig({
    env: { POE_API_KEY: "sk-secret", PROXY_API_KEYS: "k1,k2,k3", PROXY_API_KEYS_FILE: "keys.txt" },
  });
  const summary = redactedSummary(config);
  assert.deepEqual(Object.keys(summary).sort(), Object.keys(config).sort());
  assert.equal(summary.poeApiKey, "set");
  assert.equal(summary.proxyApiKeys, 3);
  assert.equal(summary.proxyApiKeysFile, "keys.txt");
  assert.equal(summary.port, 8080);
  assert.ok(!JSON.stringify(summary).includes("sk-secret"));
  assert.ok(!JSON.stringify(summary).includes("k1"));
  assert.equal(redactedSummary(resolveConfig({})).poeApiKey, "not set");
  assert.equal(redactedSummary(resolveConfig({})).proxyApiKeys, 0);
});

const ENV_EXAMPLE = new URL("../.env.example", import.meta.url);

Deno.test({
  name: ".env.example: lists every variable and resolves to the defaults",
  // Runs under `deno task test`; skipped when read permission was not granted.
  ignore: Deno.permissions.querySync({ name: "read", path: ENV_EXAMPLE }).state !== "granted",
}, async () => {
  const text = await Deno.readTextFile(ENV_EXAMPLE);
  for (const row of CONFIG_VARIABLES) {
    assert.match(text, new RegExp(`^(# )?${row.name}=`, "m"), row.name);
  }
  const vars = parseDotenv(text, ".env.example");
  assert.deepEqual(vars, { POE_API_KEY: "" });
  assert.deepEqual({ ...resolveConfig({ dotenv: vars }) }, DEFAULTS);
  const uncommented = text.replace(/^# ([A-Z_]+=)/gm, "$1");
  assert.deepEqual(
    { ...resolveConfig({ dotenv: parseDotenv(uncommented, ".env.example") }) },
    DEFAULTS,
  );
});
