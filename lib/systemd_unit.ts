/** @module `poe-proxy systemd-unit`: a hardened systemd service unit for the installed program. */

/** Where the unit looks for secrets and the optional `models.yaml`. */
export const ETC_DIR = "/etc/poe-proxy";

/** Options of {@linkcode systemdUnit}. */
export interface SystemdUnitOptions {
  /**
   * The program and its arguments, absolute paths, from {@linkcode execStartFor}. When it runs
   * through the `deno` CLI rather than a compiled binary, give `viaDeno: true` too.
   */
  execStart: readonly string[];
  /** Set by {@linkcode execStartFor}: the program is `deno run main.ts`, which needs a cache. */
  viaDeno?: boolean;
  /**
   * A user id to run as instead of a throw-away user (`DynamicUser=yes`): for `deno run`, the
   * owner of `main.ts`, since home directories are usually closed to other users (mode 0700).
   */
  user?: number;
  /** `HOST` written into the unit (the env file may override it). */
  host: string;
  /** `PORT` written into the unit (the env file may override it). */
  port: number;
  /** poe-proxy's version, named in the header comment. */
  version: string;
}

/** The flags of `deno task start`, which `deno compile` bakes into the binary too. */
export const DENO_RUN_FLAGS: readonly string[] = [
  "--unstable-no-legacy-abort",
  // A young generation of 8 MiB, not 32: a third less memory after a burst, as fast (issue 9).
  "--v8-flags=--max-semi-space-size=8",
  "--allow-net",
  "--allow-env",
  "--allow-read",
];

/** How to start the program, and whether it runs through the `deno` CLI. */
export interface ExecStart {
  argv: string[];
  viaDeno: boolean;
}

/**
 * The command line for `ExecStart=`. A compiled binary (any executable not named `deno`) runs as
 * itself; the `deno` CLI runs `main.ts` with the same permissions `deno compile` bakes in, and
 * with `--config` so the import map and lock file are found whatever the working directory.
 *
 * @param execPath `Deno.execPath()`.
 * @param mainModule the `file:` URL of `main.ts` (`import.meta.url` there).
 */
export function execStartFor(execPath: string, mainModule: string): ExecStart {
  const name = execPath.split(/[\\/]/).pop() ?? execPath;
  if (!/^deno(\.exe)?$/i.test(name) || !mainModule.startsWith("file:")) {
    return { argv: [execPath], viaDeno: false };
  }
  const main = decodeURIComponent(new URL(mainModule).pathname);
  const config = main.replace(/[^/]*$/, "deno.json");
  return {
    argv: [
      execPath,
      "run",
      ...DENO_RUN_FLAGS,
      "--config",
      config,
      main,
    ],
    viaDeno: true,
  };
}

/** Quotes one `ExecStart=` word per systemd.service(5): `%` and `$` doubled, spaces quoted. */
export function quoteExecArg(arg: string): string {
  const escaped = arg.replaceAll("%", "%%").replaceAll("$", "$$$$");
  if (/^[A-Za-z0-9_./:=+,@%$-]+$/.test(escaped)) return escaped;
  return `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/**
 * The text of `poe-proxy.service`. Secrets stay out of it: they go in `/etc/poe-proxy/env`, which
 * systemd reads as root before it starts the service as a throw-away user (`DynamicUser=yes`), or
 * as `user`.
 * `MemoryDenyWriteExecute=` is deliberately absent: V8's JIT needs writable executable memory.
 */
export function systemdUnit(options: SystemdUnitOptions): string {
  const lowPort = options.port > 0 && options.port < 1024;
  const lines = [
    `# poe-proxy ${options.version}: printed by \`poe-proxy systemd-unit\`.`,
    `# Install: sudo install -d -m 0755 ${ETC_DIR}; put POE_API_KEY=... in ${ETC_DIR}/env`,
    "# (mode 0600: systemd reads it as root); save this as /etc/systemd/system/poe-proxy.service;",
    "# sudo systemctl daemon-reload && sudo systemctl enable --now poe-proxy.",
    `# A custom models.yaml goes in ${ETC_DIR}/models.yaml (world-readable); reload it, and a`,
    "# PROXY_API_KEYS_FILE, with sudo systemctl reload poe-proxy. Logs: journalctl -u poe-proxy -f.",
    "",
    "[Unit]",
    "Description=poe-proxy, an OpenAI-compatible proxy to Poe",
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=exec",
    `ExecStart=${options.execStart.map(quoteExecArg).join(" ")}`,
    "ExecReload=/bin/kill -HUP $MAINPID",
    "Restart=on-failure",
    "RestartSec=2",
    "# Exit code 2 is a configuration error: restarting would not fix it.",
    "RestartPreventExitStatus=2",
    "# A reload sent while the program starts, before it listens for SIGHUP, ends it; systemd",
    "# counts that as a clean exit.",
    "RestartForceExitStatus=SIGHUP",
    `WorkingDirectory=${ETC_DIR}`,
    `EnvironmentFile=${ETC_DIR}/env`,
    `Environment=HOST=${options.host}`,
    `Environment=PORT=${options.port}`,
    "Environment=NO_COLOR=1",
    ...(options.viaDeno
      ? [
        "# Run through the deno CLI: npm packages are cached here on first start.",
        "Environment=DENO_DIR=/var/cache/poe-proxy DENO_NO_UPDATE_CHECK=1",
        "CacheDirectory=poe-proxy",
      ]
      : []),
    "LimitNOFILE=65536",
    "",
    "# Hardening (systemd-analyze security poe-proxy)",
    ...(options.user === undefined ? ["DynamicUser=yes"] : [
      "# The owner of main.ts: a throw-away user could not read a checkout in a closed home.",
      `User=${options.user}`,
    ]),
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    // A `deno run` install usually has main.ts under a home directory: let it be read.
    `ProtectHome=${options.viaDeno ? "read-only" : "yes"}`,
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "PrivateMounts=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "# AF_UNIX: glibc's resolver may ask nscd or systemd-resolved over a local socket.",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
    "# A system call outside the usual service set fails with EPERM instead of killing the process.",
    "SystemCallFilter=@system-service",
    "SystemCallErrorNumber=EPERM",
    ...(lowPort
      ? [
        "# PORT is below 1024: the one capability needed to listen there.",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
      ]
      : ["CapabilityBoundingSet=", "AmbientCapabilities="]),
    "UMask=0077",
    "# No MemoryDenyWriteExecute=yes: V8's JIT compiler needs writable, executable memory.",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ];
  return lines.join("\n");
}

/**
 * Who a `deno run` service should run as, and what would stop it reading `main.ts`: the owner of
 * `main.ts` unless that is root (a service never runs as root; a throw-away user is used, which
 * can read only a world-readable checkout), and a warning for a checkout under `/tmp`, which the
 * unit's `PrivateTmp=yes` hides.
 */
export function runAsFor(mainPath: string, ownerUid: number | null): {
  user?: number;
  warnings: string[];
} {
  const warnings: string[] = [];
  if (mainPath.startsWith("/tmp/") || mainPath.startsWith("/var/tmp/")) {
    warnings.push(
      `${mainPath} is under a temporary folder, which the service cannot see (PrivateTmp=yes): ` +
        "move the checkout, e.g. to /opt/poe-proxy, and print the unit again.",
    );
  }
  if (ownerUid === null || ownerUid === 0) {
    warnings.push(
      `${mainPath} belongs to root: the service runs as a throw-away user, so the checkout and ` +
        "every folder above it must be world-readable (e.g. /opt/poe-proxy, not /root).",
    );
    return { warnings };
  }
  return { user: ownerUid, warnings };
}
