/** @module The command line: its help text, its parsing, and the error a startup fails with. */
import { parseArgs } from "node:util";
import { CONFIG_VARIABLES } from "./config_table.ts";

/** A startup failure: printed as one line, exit code 2. */
export class StartupError extends Error {}

/** The `--help` text of poe-proxy `version`: commands, options and every variable. */
export function helpText(version: string): string {
  return `poe-proxy ${version}: an OpenAI-compatible proxy to Poe that guards your points.

Usage:
  poe-proxy [options]                 start the server
  poe-proxy models [--remote] [--json]  list this proxy's models, or Poe's live catalogue
  poe-proxy check                     validate configuration and models.yaml, then exit
  poe-proxy usage [--json]            print the balance, next grant and points per model (1/7/30 days)
  poe-proxy healthcheck               exit 0 if the server at HOST:PORT answers /healthz, else 1
  poe-proxy systemd-unit              print a hardened systemd unit for this program
  poe-proxy --help | --version

Options:
  --host HOST        address to listen on (HOST, default 127.0.0.1)
  --port PORT        port to listen on; 0 picks a free one (PORT, default 8080)
  --models FILE      models.yaml to use (MODELS_FILE)
  --env-file FILE    read variables from FILE instead of ./.env

Environment variables (also read from .env):
${
    CONFIG_VARIABLES.map((v) =>
      `  ${v.name.padEnd(26)} ${v.description}${v.default ? ` (default ${v.default})` : ""}`
    ).join("\n")
  }
`;
}

/** `args` as options and positionals; an unknown or malformed option is a {@linkcode StartupError}. */
export function parseCommandLine(args: string[]) {
  try {
    return parseArgs({
      // `deno task start -- --port 9000` (npm's habit) passes the `--` on: it is not an end of
      // the options here, which would make every option after it an unknown command.
      args: args[0] === "--" ? args.slice(1) : args,
      allowPositionals: true,
      options: {
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "v" },
        host: { type: "string" },
        port: { type: "string" },
        models: { type: "string" },
        "env-file": { type: "string" },
        remote: { type: "boolean" },
        json: { type: "boolean" },
      },
    });
  } catch (err) {
    throw new StartupError(`${(err as Error).message}. Run poe-proxy --help for the options.`);
  }
}

/** The options of a parsed command line. */
export type CommandLine = ReturnType<typeof parseCommandLine>["values"];
