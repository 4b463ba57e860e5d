/** @module BrowserGuard: foreign origins and DNS-rebinding hosts, without blocking programs. */
import assert from "node:assert/strict";
import { BrowserGuard, type BrowserGuardOptions } from "../lib/browser_guard.ts";
import { ProxyError } from "../lib/errors.ts";

const FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

function guard(options: Partial<BrowserGuardOptions> = {}): BrowserGuard {
  return new BrowserGuard({ corsOrigins: [], allowedHosts: [], keysEnabled: false, ...options });
}

function request(headers: Record<string, string>, method = "POST"): Request {
  return new Request("http://127.0.0.1:8080/v1/chat/completions", { method, headers });
}

/** The code of the 403 `check` throws, or null when it lets the request through. */
function verdict(
  g: BrowserGuard,
  headers: Record<string, string>,
  anyClient = false,
  method = "POST",
) {
  try {
    g.check(request(headers, method), anyClient);
    return null;
  } catch (err) {
    assert.ok(err instanceof ProxyError);
    assert.equal(err.status, 403);
    assert.equal(err.type, "permission_error");
    return err.code;
  }
}

Deno.test("BrowserGuard: programs reach the API by any host name; a browser only by a local one", () => {
  const g = guard();
  for (const host of ["poe-proxy:8080", "host.docker.internal:8080", "attacker.example"]) {
    assert.equal(verdict(g, { host }), null, `a program asking for ${host}`);
    assert.equal(verdict(g, { host, "user-agent": "curl/8.5.0" }), null);
    assert.equal(verdict(g, { host, "user-agent": "OpenAI/JS 4.0" }), null);
  }
  // What marks a browser: a Mozilla/ agent, a Sec-Fetch-* header, or an Origin.
  const host = "attacker.example:8080";
  assert.equal(verdict(g, { host, "user-agent": FIREFOX }), "host_not_allowed");
  assert.equal(verdict(g, { host, "sec-fetch-mode": "cors" }), "host_not_allowed");
  assert.equal(verdict(g, { host, origin: "http://attacker.example:8080" }), "host_not_allowed");
});

Deno.test("BrowserGuard: localhost, its subdomains and IP addresses are always local names", () => {
  const g = guard();
  for (
    const host of [
      "localhost",
      "localhost:8080",
      "LOCALHOST:8080",
      "localhost.:8080",
      "app.localhost:3000",
      "127.0.0.1:8080",
      "192.168.1.20",
      "[::1]:8080",
      "[fe80::1]",
    ]
  ) {
    assert.equal(verdict(g, { host, "user-agent": FIREFOX }), null, host);
    assert.equal(verdict(g, { host }, true), null, `${host}, data paths`);
  }
  for (const host of ["localhost.attacker.example", "127.0.0.1.nip.io", "evil-localhost"]) {
    assert.equal(verdict(g, { host, "user-agent": FIREFOX }), "host_not_allowed", host);
  }
});

Deno.test("BrowserGuard: on the data paths (anyClient) the Host is checked whoever asks", () => {
  const g = guard();
  assert.equal(verdict(g, { host: "attacker.example" }, true), "host_not_allowed");
  assert.equal(verdict(g, { host: "attacker.example" }, false), null);
  // A request without a Host (HTTP/1.0) cannot be judged by it.
  assert.equal(verdict(g, {}, true), null);
});

Deno.test("BrowserGuard: ALLOWED_HOSTS names are allowed whatever the port, case or final dot", () => {
  const g = guard({ allowedHosts: ["proxy.lan"] });
  for (const host of ["proxy.lan", "proxy.lan:8080", "PROXY.LAN:80", "proxy.lan."]) {
    assert.equal(verdict(g, { host, "user-agent": FIREFOX }, true), null, host);
  }
  assert.equal(verdict(g, { host: "other.lan", "user-agent": FIREFOX }), "host_not_allowed");
  assert.equal(verdict(g, { host: "sub.proxy.lan" }, true), "host_not_allowed");
  // `*` allows any name.
  assert.equal(verdict(guard({ allowedHosts: ["*"] }), { host: "anything.example" }, true), null);
});

Deno.test("BrowserGuard: with inbound keys the Host needs no check: a page cannot know a key", () => {
  const g = guard({ keysEnabled: true });
  assert.equal(verdict(g, { host: "attacker.example", "user-agent": FIREFOX }, true), null);
  // The Origin still is.
  assert.equal(
    verdict(g, { host: "attacker.example", origin: "https://other.example" }),
    "origin_not_allowed",
  );
});

Deno.test("BrowserGuard: the 403 for a host names it, quoted and cut, and says how to allow it", () => {
  const g = guard();
  const long = `${"a".repeat(300)}.example:8080`;
  for (const host of ["Evil.Example:8080", long]) {
    let err: ProxyError | null = null;
    try {
      g.check(request({ host }), true);
    } catch (e) {
      err = e as ProxyError;
    }
    assert.ok(err);
    assert.equal(err.code, "host_not_allowed");
    const name = host.toLowerCase().replace(/:\d+$/, "").slice(0, 100);
    assert.ok(err.message.includes(`host ${JSON.stringify(name)} are refused`), err.message);
    assert.match(err.message, /Add the name to ALLOWED_HOSTS, or set PROXY_API_KEYS\.$/);
    assert.ok(err.message.length < 400);
  }
});

Deno.test("BrowserGuard: a page of a foreign origin is refused, even with keys and a local host", () => {
  const g = guard({ keysEnabled: true });
  const code = verdict(g, { host: "127.0.0.1:8080", origin: "https://evil.example" });
  assert.equal(code, "origin_not_allowed");
  let message = "";
  try {
    g.check(request({ host: "127.0.0.1:8080", origin: "https://evil.example" }));
  } catch (err) {
    message = (err as Error).message;
  }
  assert.match(message, /^Requests from web pages of "https:\/\/evil\.example" are refused/);
  assert.match(message, /Add the origin to CORS_ORIGINS to allow it\.$/);
  // A long origin is cut in the message.
  const long = `https://${"a".repeat(300)}.example`;
  try {
    g.check(request({ host: "127.0.0.1:8080", origin: long }));
  } catch (err) {
    message = (err as Error).message;
  }
  assert.ok(message.includes(`of ${JSON.stringify(long.slice(0, 100))} are refused`), message);
  // `null` (a sandboxed page, a file) is foreign too.
  assert.equal(verdict(g, { host: "127.0.0.1:8080", origin: "null" }), "origin_not_allowed");
});

Deno.test("BrowserGuard: the proxy's own pages (same host and port) pass without CORS_ORIGINS", () => {
  const g = guard();
  assert.equal(
    verdict(g, { host: "127.0.0.1:8080", origin: "http://127.0.0.1:8080" }, true),
    null,
  );
  assert.equal(verdict(g, { host: "localhost:8080", origin: "http://localhost:8080" }), null);
  // Another port of the same machine is another origin.
  assert.equal(
    verdict(g, { host: "127.0.0.1:8080", origin: "http://127.0.0.1:3000" }),
    "origin_not_allowed",
  );
});

Deno.test("BrowserGuard: origins in CORS_ORIGINS, or any with *, may call the proxy", () => {
  const g = guard({ corsOrigins: ["https://chat.example.com", "app://obsidian.md"] });
  const host = "127.0.0.1:8080";
  assert.equal(verdict(g, { host, origin: "https://chat.example.com" }), null);
  assert.equal(verdict(g, { host, origin: "app://obsidian.md" }), null);
  assert.equal(
    verdict(g, { host, origin: "https://chat.example.com.evil.io" }),
    "origin_not_allowed",
  );
  const any = guard({ corsOrigins: ["*"] });
  assert.equal(verdict(any, { host, origin: "https://whoever.example" }), null);
});

Deno.test("BrowserGuard: an allowed origin's page reaches the proxy by any name; a rebinding page does not", () => {
  const g = guard({ corsOrigins: ["https://chat.example.com", "http://rebind.example:8080"] });
  // The page of an allowed origin, calling the proxy by a name not in ALLOWED_HOSTS.
  assert.equal(
    verdict(g, {
      host: "proxy.lan:8080",
      origin: "https://chat.example.com",
      "user-agent": FIREFOX,
    }),
    null,
  );
  // A page whose own name is the Host is a DNS-rebinding page, even if its origin is allowed.
  assert.equal(
    verdict(g, { host: "rebind.example:8080", origin: "http://rebind.example:8080" }),
    "host_not_allowed",
  );
});

Deno.test("BrowserGuard: a preflight (OPTIONS) from any origin only asks and is let through", () => {
  const g = guard();
  const headers = { host: "127.0.0.1:8080", origin: "https://evil.example" };
  assert.equal(verdict(g, headers, false, "OPTIONS"), null);
  // Its Host is still checked.
  assert.equal(
    verdict(g, { host: "attacker.example", origin: "https://evil.example" }, false, "OPTIONS"),
    "host_not_allowed",
  );
});

Deno.test("BrowserGuard: verdicts stay right past the bound on remembered hosts", () => {
  const g = guard({ allowedHosts: ["proxy.lan"] });
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 600; i++) {
      const local = i % 2 === 0;
      const host = local ? `10.0.${i >> 8}.${i & 255}:8080` : `name-${i}.example:8080`;
      assert.equal(verdict(g, { host }, true), local ? null : "host_not_allowed", host);
    }
    assert.equal(verdict(g, { host: "proxy.lan" }, true), null);
    assert.equal(verdict(g, { host: "attacker.example" }, true), "host_not_allowed");
  }
});

Deno.test("BrowserGuard.pageHost: names the host of a browser's request a rebinding page could send, keys or not", () => {
  for (const keysEnabled of [false, true]) {
    const g = guard({
      keysEnabled,
      allowedHosts: ["homeserver"],
      corsOrigins: ["https://chat.example.com"],
    });
    const page = (headers: Record<string, string>) => g.pageHost(request(headers));
    // What a same-origin fetch of a page at evil.example, rebound to this proxy, sends.
    assert.equal(
      page({
        host: "Evil.Example:8080",
        origin: "http://evil.example:8080",
        "user-agent": FIREFOX,
        "sec-fetch-mode": "cors",
        "sec-fetch-site": "same-origin",
      }),
      "evil.example",
    );
    assert.equal(page({ host: "evil.example", "user-agent": FIREFOX }), "evil.example");
    assert.equal(page({ host: "evil.example", "sec-fetch-mode": "cors" }), "evil.example");
    assert.equal(page({ host: "evil.example", origin: "http://evil.example" }), "evil.example");
    // Programs, whatever the name; browsers at local names or ALLOWED_HOSTS; an allowed origin.
    const others: Record<string, string>[] = [
      { host: "evil.example" },
      { host: "poe-proxy:8080", "user-agent": "OpenAI/JS 4.0" },
      { host: "127.0.0.1:8080", "user-agent": FIREFOX },
      { host: "localhost:8080", origin: "http://localhost:8080", "sec-fetch-mode": "cors" },
      { host: "[::1]:8080", "user-agent": FIREFOX },
      { host: "HomeServer:8080", "user-agent": FIREFOX },
      { host: "proxy.lan", origin: "https://chat.example.com", "sec-fetch-mode": "cors" },
    ];
    for (const headers of others) {
      assert.equal(page(headers), null, JSON.stringify(headers));
    }
    // With ALLOWED_HOSTS=* every name is allowed, so none is a rebinding page's.
    const any = guard({ keysEnabled, allowedHosts: ["*"] });
    assert.equal(any.pageHost(request({ host: "evil.example", "user-agent": FIREFOX })), null);
  }
});
