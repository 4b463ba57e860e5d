/** @module systemdUnit, execStartFor, quoteExecArg and runAsFor: `poe-proxy systemd-unit`. */
import assert from "node:assert/strict";
import {
  DENO_RUN_FLAGS,
  execStartFor,
  quoteExecArg,
  runAsFor,
  systemdUnit,
  type SystemdUnitOptions,
} from "../lib/systemd_unit.ts";
import { HARDENING, unitLines } from "./systemd_lines.ts";

const decoder = new TextDecoder();

function unit(options: Partial<SystemdUnitOptions> = {}): string[] {
  return unitLines(
    systemdUnit({
      execStart: ["/usr/local/bin/poe-proxy"],
      host: "127.0.0.1",
      port: 8080,
      version: "1.0.0",
      ...options,
    }),
  );
}

Deno.test("runAsFor: a deno run service runs as main.ts's owner; root and /tmp checkouts warn", () => {
  assert.deepEqual(runAsFor("/home/ann/poe-proxy/main.ts", 1000), { user: 1000, warnings: [] });
  const root = runAsFor("/opt/poe-proxy/main.ts", 0);
  assert.equal(root.user, undefined);
  assert.equal(root.warnings.length, 1);
  assert.match(root.warnings[0], /world-readable/);
  const tmp = runAsFor("/tmp/poe-proxy/main.ts", 1000);
  assert.equal(tmp.user, 1000);
  assert.match(tmp.warnings[0], /PrivateTmp=yes/);
  const unit = unitLines(
    systemdUnit({
      execStart: ["/usr/bin/deno", "run", "/home/ann/poe-proxy/main.ts"],
      viaDeno: true,
      user: 1000,
      host: "127.0.0.1",
      port: 8080,
      version: "1",
    }),
  );
  assert.ok(unit.includes("User=1000"));
  assert.ok(!unit.includes("DynamicUser=yes"));
  for (const l of HARDENING) assert.ok(unit.includes(l), `missing ${l}`);
});

Deno.test("systemdUnit for a compiled binary: ExecStart is the binary, home hidden, no cache", () => {
  const exec = execStartFor(
    "/usr/local/bin/poe-proxy",
    "file:///tmp/deno-compile-poe-proxy/main.ts",
  );
  assert.deepEqual(exec, { argv: ["/usr/local/bin/poe-proxy"], viaDeno: false });
  const lines = unitLines(
    systemdUnit({ execStart: exec.argv, host: "127.0.0.1", port: 8080, version: "1.2.3" }),
  );
  for (const l of [...HARDENING, "DynamicUser=yes"]) assert.ok(lines.includes(l), `missing ${l}`);
  assert.ok(lines.includes("ExecStart=/usr/local/bin/poe-proxy"));
  assert.ok(lines.includes("ProtectHome=yes"));
  assert.ok(!lines.some((l) => l.includes("DENO_DIR")));
  const low = unitLines(
    systemdUnit({ execStart: exec.argv, host: "0.0.0.0", port: 80, version: "1" }),
  );
  assert.ok(low.includes("AmbientCapabilities=CAP_NET_BIND_SERVICE"));
  assert.ok(low.includes("CapabilityBoundingSet=CAP_NET_BIND_SERVICE"));
});

Deno.test("execStartFor recognises the deno CLI; quoteExecArg escapes what systemd expands", () => {
  const viaDeno = execStartFor("C:\\deno\\deno.exe", "file:///srv/poe%20proxy/main.ts");
  assert.equal(viaDeno.viaDeno, true);
  assert.equal(viaDeno.argv.at(-1), "/srv/poe proxy/main.ts");
  assert.equal(viaDeno.argv[viaDeno.argv.indexOf("--config") + 1], "/srv/poe proxy/deno.json");
  assert.equal(quoteExecArg("/srv/poe proxy/main.ts"), '"/srv/poe proxy/main.ts"');
  assert.equal(quoteExecArg("/opt/100%/$x"), "/opt/100%%/$$x");
  assert.equal(quoteExecArg('a"b c'), '"a\\"b c"');
});

Deno.test({
  name: "systemd-analyze reads every line of the unit and rates it OK (where it is installed)",
  ignore: !(() => {
    try {
      return Deno.statSync("/usr/bin/systemd-analyze").isFile;
    } catch {
      return false;
    }
  })(),
  fn: async () => {
    const dir = Deno.makeTempDirSync();
    const bin = `${dir}/poe-proxy`;
    Deno.writeTextFileSync(bin, "#!/bin/sh\n");
    Deno.chmodSync(bin, 0o755);
    const unit = `${dir}/poe-proxy.service`;
    Deno.writeTextFileSync(
      unit,
      systemdUnit({ execStart: [bin], host: "127.0.0.1", port: 8080, version: "test" }),
    );
    // `security --offline` parses the file without a running systemd and reports unknown keys.
    const out = await new Deno.Command("/usr/bin/systemd-analyze", {
      args: ["security", "--offline=yes", "--no-pager", unit],
      env: { SYSTEMD_COLORS: "0" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = decoder.decode(out.stderr);
    assert.equal(stderr.trim(), "", stderr);
    const level = decoder.decode(out.stdout).match(/Overall exposure level for \S+: ([\d.]+)/);
    assert.ok(level, decoder.decode(out.stdout));
    assert.ok(Number(level[1]) <= 3.0, `exposure ${level[1]}`);
  },
});

Deno.test("execStartFor: the deno CLI runs main.ts with the start flags and its deno.json", () => {
  const exec = execStartFor("/home/ann/.deno/bin/deno", "file:///home/ann/poe-proxy/main.ts");
  assert.deepEqual(exec, {
    argv: [
      "/home/ann/.deno/bin/deno",
      "run",
      ...DENO_RUN_FLAGS,
      "--config",
      "/home/ann/poe-proxy/deno.json",
      "/home/ann/poe-proxy/main.ts",
    ],
    viaDeno: true,
  });
  assert.ok(DENO_RUN_FLAGS.includes("--allow-net"));
  assert.ok(!DENO_RUN_FLAGS.some((f) => f === "--allow-all" || f === "-A"));
  // Any casing of deno.exe on Windows.
  assert.equal(execStartFor("C:\\Deno\\DENO.EXE", "file:///C:/p/main.ts").viaDeno, true);
});

Deno.test("execStartFor: any other executable, or a main module that is no file, runs as itself", () => {
  for (
    const [execPath, main] of [
      ["/usr/local/bin/poe-proxy", "file:///home/ann/poe-proxy/main.ts"],
      ["/usr/bin/denox", "file:///p/main.ts"],
      ["/usr/bin/my-deno", "file:///p/main.ts"],
      ["/usr/bin/deno", "https://example.com/main.ts"],
    ]
  ) {
    assert.deepEqual(execStartFor(execPath, main), { argv: [execPath], viaDeno: false }, execPath);
  }
});

Deno.test("quoteExecArg leaves plain words alone and quotes or escapes the rest", () => {
  assert.equal(quoteExecArg("/usr/bin/deno"), "/usr/bin/deno");
  assert.equal(
    quoteExecArg("--v8-flags=--max-semi-space-size=8"),
    "--v8-flags=--max-semi-space-size=8",
  );
  assert.equal(quoteExecArg("a,b@c+d"), "a,b@c+d");
  assert.equal(quoteExecArg(""), '""');
  assert.equal(quoteExecArg("a\\b c"), '"a\\\\b c"');
  assert.equal(quoteExecArg("it's"), `"it's"`);
  assert.equal(quoteExecArg("50% off $HOME"), '"50%% off $$HOME"');
});

Deno.test("systemdUnit: ExecStart quotes each word; HOST, PORT and the version are written in", () => {
  const text = systemdUnit({
    execStart: ["/opt/poe proxy/deno", "run", "/opt/poe proxy/main.ts"],
    host: "0.0.0.0",
    port: 9000,
    version: "2.3.4",
  });
  assert.match(text, /^# poe-proxy 2\.3\.4: printed by `poe-proxy systemd-unit`\./);
  const lines = unitLines(text);
  assert.ok(lines.includes('ExecStart="/opt/poe proxy/deno" run "/opt/poe proxy/main.ts"'));
  assert.ok(lines.includes("Environment=HOST=0.0.0.0"));
  assert.ok(lines.includes("Environment=PORT=9000"));
  assert.ok(lines.includes("WorkingDirectory=/etc/poe-proxy"));
  assert.ok(lines.includes("RestartPreventExitStatus=2"), "a config error is not restarted");
  assert.ok(lines.includes("RestartForceExitStatus=SIGHUP"), "a reload during start-up is");
  assert.ok(text.endsWith("WantedBy=multi-user.target\n"));
  // The sections in order.
  const sections = lines.filter((l) => l.startsWith("["));
  assert.deepEqual(sections, ["[Unit]", "[Service]", "[Install]"]);
});

Deno.test("systemdUnit: only a port below 1024 gets CAP_NET_BIND_SERVICE; others no capability", () => {
  for (const port of [1, 80, 443, 1023]) {
    const lines = unit({ port });
    assert.ok(lines.includes("CapabilityBoundingSet=CAP_NET_BIND_SERVICE"), String(port));
    assert.ok(lines.includes("AmbientCapabilities=CAP_NET_BIND_SERVICE"), String(port));
  }
  for (const port of [0, 1024, 8080]) {
    const lines = unit({ port });
    assert.ok(lines.includes("CapabilityBoundingSet="), String(port));
    assert.ok(lines.includes("AmbientCapabilities="), String(port));
    assert.ok(!lines.some((l) => l.includes("CAP_NET_BIND_SERVICE")), String(port));
  }
});

Deno.test("systemdUnit through deno without a user: a throw-away user, a cache, home read-only", () => {
  const lines = unit({ execStart: ["/usr/bin/deno", "run", "/opt/p/main.ts"], viaDeno: true });
  assert.ok(lines.includes("DynamicUser=yes"));
  assert.ok(!lines.some((l) => l.startsWith("User=")));
  assert.ok(lines.includes("ProtectHome=read-only"));
  assert.ok(lines.includes("CacheDirectory=poe-proxy"));
  assert.ok(lines.includes("Environment=DENO_DIR=/var/cache/poe-proxy DENO_NO_UPDATE_CHECK=1"));
  for (const l of HARDENING) assert.ok(lines.includes(l), `missing ${l}`);
  // A secret never goes into the unit: it points at the env file.
  assert.ok(!lines.some((l) => l.includes("POE_API_KEY")));
  assert.ok(!lines.some((l) => l.startsWith("MemoryDenyWriteExecute")));
});

Deno.test("runAsFor: /var/tmp warns too; a root or unknown owner under /tmp gives both warnings", () => {
  const varTmp = runAsFor("/var/tmp/p/main.ts", 1000);
  assert.equal(varTmp.user, 1000);
  assert.equal(varTmp.warnings.length, 1);
  assert.match(varTmp.warnings[0], /^\/var\/tmp\/p\/main\.ts is under a temporary folder/);
  const unknown = runAsFor("/tmp/p/main.ts", null);
  assert.equal(unknown.user, undefined);
  assert.equal(unknown.warnings.length, 2);
  assert.match(unknown.warnings[0], /PrivateTmp=yes/);
  assert.match(unknown.warnings[1], /belongs to root/);
  // A folder merely named like tmp is no temporary folder.
  assert.deepEqual(runAsFor("/home/ann/tmp/main.ts", 1000), { user: 1000, warnings: [] });
});
