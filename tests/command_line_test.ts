/** @module The command line: the help text and the parsing of options. */
import assert from "node:assert/strict";
import { CONFIG_VARIABLES } from "../lib/config_table.ts";
import { helpText, parseCommandLine, StartupError } from "../lib/command_line.ts";

Deno.test("helpText names the version, every command and every variable with its default", () => {
  const help = helpText("9.8.7");
  assert.match(help, /^poe-proxy 9\.8\.7: /);
  for (const command of ["models", "check", "usage", "healthcheck", "systemd-unit"]) {
    assert.match(help, new RegExp(`\\n  poe-proxy ${command}\\b`), command);
  }
  for (const v of CONFIG_VARIABLES) {
    const line = help.split("\n").find((l) => l.startsWith(`  ${v.name} `));
    assert.ok(line, v.name);
    // Descriptions line up in one column.
    assert.equal(line.indexOf(v.description), 2 + 26 + 1, v.name);
    if (v.default) assert.ok(line.endsWith(`(default ${v.default})`), v.name);
  }
});

Deno.test("parseCommandLine reads the command and its options", () => {
  const { values, positionals } = parseCommandLine([
    "models",
    "--remote",
    "--json",
    "--port",
    "0",
    "--env-file",
    "x.env",
  ]);
  assert.deepEqual(positionals, ["models"]);
  assert.equal(values.remote, true);
  assert.equal(values.json, true);
  assert.equal(values.port, "0");
  assert.equal(values["env-file"], "x.env");
  assert.equal(parseCommandLine(["-h"]).values.help, true);
  assert.equal(parseCommandLine(["-v"]).values.version, true);
});

Deno.test("parseCommandLine: an unknown or incomplete option is a StartupError pointing at --help", () => {
  assert.throws(
    () => parseCommandLine(["--bogus"]),
    (err) =>
      err instanceof StartupError && /'--bogus'/.test(err.message) &&
      err.message.endsWith(". Run poe-proxy --help for the options."),
  );
  assert.throws(() => parseCommandLine(["--port"]), StartupError);
});

Deno.test("parseCommandLine skips the `--` that `deno task start -- --port 9000` passes on", () => {
  const { values, positionals } = parseCommandLine(["--", "--port", "9000", "--help"]);
  assert.equal(values.port, "9000");
  assert.equal(values.help, true);
  assert.deepEqual(positionals, []);
  // A `--` further on still ends the options, as everywhere.
  assert.deepEqual(parseCommandLine(["models", "--", "--json"]).positionals, ["models", "--json"]);
});
