import assert from "node:assert/strict";
import {
  addressKey,
  clientAddress,
  clientKey,
  isIpAddress,
  parseTrustProxy,
} from "../lib/client_id.ts";

Deno.test("parseTrustProxy splits, trims, normalises and dedupes", () => {
  assert.deepEqual(parseTrustProxy(""), []);
  assert.deepEqual(
    parseTrustProxy(" 10.0.0.1, ::1 ,10.0.0.0/8,, ::ffff:192.168.1.1 ,0:0:0:0:0:0:0:1, FD00::/8"),
    ["10.0.0.1", "::1", "10.0.0.0/8", "192.168.1.1", "fd00::/8"],
  );
  assert.deepEqual(parseTrustProxy("10.1.2.3/8"), ["10.0.0.0/8"]);
  assert.deepEqual(parseTrustProxy("::ffff:10.0.0.0/104"), ["10.0.0.0/8"]);
  assert.deepEqual(parseTrustProxy("127.0.0.1/32"), ["127.0.0.1"]);
});

Deno.test("parseTrustProxy rejects entries that are not addresses, naming them", () => {
  for (const bad of ["localhost", "10.0.0.256", "10.0.0.0/33", "::1/129", "1.2.3", "1:2:3"]) {
    assert.throws(() => parseTrustProxy(`10.0.0.1, ${bad}`), (err: Error) => {
      assert.match(err.message, /TRUST_PROXY/);
      assert.ok(err.message.includes(JSON.stringify(bad)), err.message);
      return true;
    });
  }
});

Deno.test("clientAddress uses the peer when no proxy is trusted", () => {
  assert.equal(clientAddress("203.0.113.7", "1.1.1.1", []), "203.0.113.7");
  assert.equal(clientAddress("203.0.113.7", null, ["203.0.113.7"]), "203.0.113.7");
});

Deno.test("clientAddress ignores a spoofed X-Forwarded-For from an untrusted peer", () => {
  const trusted = parseTrustProxy("10.0.0.1");
  assert.equal(clientAddress("203.0.113.7", "1.2.3.4", trusted), "203.0.113.7");
  assert.equal(clientAddress("10.0.0.2", "1.2.3.4", trusted), "10.0.0.2");
});

Deno.test("clientAddress takes the forwarded address from a trusted peer", () => {
  const trusted = parseTrustProxy("10.0.0.1");
  assert.equal(clientAddress("10.0.0.1", "198.51.100.9", trusted), "198.51.100.9");
  assert.equal(clientAddress("10.0.0.1", "", trusted), "10.0.0.1");
});

Deno.test("clientAddress takes the right-most untrusted hop across several proxies", () => {
  const trusted = parseTrustProxy("10.0.0.1, 10.0.0.2");
  // The client claims to be 1.2.3.4; the first trusted proxy saw 198.51.100.9.
  assert.equal(
    clientAddress("10.0.0.1", "1.2.3.4, 198.51.100.9, 10.0.0.2", trusted),
    "198.51.100.9",
  );
  // Several headers joined by Headers.get arrive as one comma-separated value.
  const headers = new Headers([["x-forwarded-for", "1.2.3.4"], ["x-forwarded-for", "5.6.7.8"]]);
  assert.equal(clientAddress("10.0.0.1", headers.get("x-forwarded-for"), trusted), "5.6.7.8");
});

Deno.test("clientAddress skips malformed entries and strips ports", () => {
  const trusted = parseTrustProxy("10.0.0.1");
  assert.equal(
    clientAddress("10.0.0.1", "198.51.100.9, garbage, ,unknown", trusted),
    "198.51.100.9",
  );
  assert.equal(clientAddress("10.0.0.1", "198.51.100.9:4711", trusted), "198.51.100.9");
  assert.equal(clientAddress("10.0.0.1", "[2001:db8::1]:443", trusted), "2001:db8::1");
  assert.equal(clientAddress("10.0.0.1", "x".repeat(10_000), trusted), "10.0.0.1");
});

Deno.test("clientAddress returns the left-most hop when every hop is trusted", () => {
  const trusted = parseTrustProxy("10.0.0.0/8");
  assert.equal(clientAddress("10.0.0.1", "10.1.1.1, 10.2.2.2", trusted), "10.1.1.1");
});

Deno.test("clientAddress matches CIDR ranges, IPv4 and IPv6", () => {
  const trusted = parseTrustProxy("10.0.0.0/8, 172.16.0.0/12, fd00::/8, ::1");
  assert.equal(clientAddress("10.200.3.4", "198.51.100.9", trusted), "198.51.100.9");
  assert.equal(clientAddress("172.31.255.255", "198.51.100.9", trusted), "198.51.100.9");
  assert.equal(clientAddress("172.32.0.1", "198.51.100.9", trusted), "172.32.0.1");
  assert.equal(clientAddress("fd12:3456::1", "2001:DB8::0:1", trusted), "2001:db8::1");
  assert.equal(clientAddress("::1", "198.51.100.9, fd00::5", trusted), "198.51.100.9");
  assert.equal(clientAddress("fe80::1", "198.51.100.9", trusted), "fe80::1");
});

Deno.test("clientAddress normalises IPv4-mapped IPv6 on both sides", () => {
  const trusted = parseTrustProxy("127.0.0.1");
  assert.equal(clientAddress("::ffff:127.0.0.1", "::ffff:198.51.100.9", trusted), "198.51.100.9");
  assert.equal(clientAddress("::FFFF:203.0.113.7", null, trusted), "203.0.113.7");
  assert.equal(clientAddress("[::1]", null, trusted), "::1");
  assert.equal(clientAddress("fe80::1%eth0", null, trusted), "fe80::1");
  assert.equal(
    clientAddress("2001:0db8:0000:0000:0001:0000:0000:0001", null, []),
    "2001:db8::1:0:0:1",
  );
});

Deno.test("clientAddress returns a peer that is not an IP address as it is", () => {
  assert.equal(clientAddress(" /tmp/sock ", "1.2.3.4", ["10.0.0.1"]), "/tmp/sock");
});

Deno.test("addressKey groups global IPv6 by /64 and keeps IPv4", () => {
  assert.equal(addressKey("203.0.113.7"), "203.0.113.7");
  assert.equal(addressKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::/64");
  assert.equal(addressKey("::ffff:1.2.3.4"), "1.2.3.4");
  assert.equal(addressKey("key-1"), "key-1");
});

Deno.test("addressKey keeps loopback, link-local and unique-local IPv6 whole: one LAN, many devices", () => {
  for (
    const [address, key] of [
      ["::1", "::1"],
      ["[::1]", "::1"],
      ["fe80::1c2d:3eff:fe4f:5a6b", "fe80::1c2d:3eff:fe4f:5a6b"],
      ["fe80::9%eth0", "fe80::9"],
      ["febf:ffff::1", "febf:ffff::1"],
      ["fd12:3456:789a:1::20", "fd12:3456:789a:1::20"],
      ["fc00::5", "fc00::5"],
      ["::ffff:192.168.1.20", "192.168.1.20"],
    ]
  ) {
    assert.equal(addressKey(address), key, address);
    assert.equal(addressKey(address, { ipv6Prefix: 48 }), key, `${address} /48`);
  }
  // Two devices of one household network: two clients.
  assert.notEqual(addressKey("fe80::1"), addressKey("fe80::2"));
  assert.notEqual(addressKey("fd00::1"), addressKey("fd00::2"));
  // Just outside those ranges, global addresses are grouped.
  assert.equal(addressKey("fec0::1"), "fec0::/64");
  assert.equal(addressKey("fe00::1"), "fe00::/64");
  assert.equal(addressKey("fe00::1"), addressKey("fe00::2"));
  assert.equal(addressKey("fb00::1"), "fb00::/64");
});

Deno.test("addressKey groups global IPv6 by RATE_LIMIT_IPV6_PREFIX; 128 keeps each address", () => {
  const phone = "2a02:8071:1234:5600:aaaa:bbbb:cccc:1";
  const laptop = "2a02:8071:1234:5600:1111:2222:3333:4444";
  assert.equal(addressKey(phone, { ipv6Prefix: 128 }), "2a02:8071:1234:5600:aaaa:bbbb:cccc:1");
  assert.notEqual(addressKey(phone, { ipv6Prefix: 128 }), addressKey(laptop, { ipv6Prefix: 128 }));
  assert.equal(addressKey(phone, { ipv6Prefix: 56 }), "2a02:8071:1234:5600::/56");
  assert.equal(
    addressKey("2a02:8071:1234:56ff::1", { ipv6Prefix: 56 }),
    "2a02:8071:1234:5600::/56",
  );
  assert.equal(addressKey(phone, { ipv6Prefix: 61 }), "2a02:8071:1234:5600::/61");
  assert.equal(addressKey(phone, { ipv6Prefix: 1 }), "::/1");
  assert.equal(addressKey(phone, { ipv6Prefix: 127 }), "2a02:8071:1234:5600:aaaa:bbbb:cccc:0/127");
  // IPv4 is never touched.
  assert.equal(addressKey("203.0.113.7", { ipv6Prefix: 1 }), "203.0.113.7");
});

Deno.test("isIpAddress accepts addresses and rejects the rest", () => {
  for (
    const ok of ["1.2.3.4", "::", "::1", "1::", "2001:db8::1.2.3.4", "[::1]", "a:b:c:d:e:f:1:2"]
  ) {
    assert.ok(isIpAddress(ok), ok);
  }
  for (
    const bad of ["", "1.2.3.04", "1.2.3.4.5", "1::2::3", ":1", "1:", "a:b:c:d:e:f:1:2:3", "g::1"]
  ) {
    assert.ok(!isIpAddress(bad), bad);
  }
});

Deno.test("clientKey is addressKey of clientAddress, remembered or not", () => {
  const trusted = parseTrustProxy("10.0.0.0/8");
  const cases: [string, string | null, readonly string[]][] = [
    ["203.0.113.7", null, []],
    ["203.0.113.7", "1.1.1.1", []],
    ["2001:db8:1:2:3:4:5:6", null, []],
    ["[2001:db8:1:2::9]", null, trusted],
    ["::ffff:192.0.2.1", null, []],
    ["::1", null, []],
    ["fe80::1", null, []],
    ["10.1.2.3", "198.51.100.4, 10.9.9.9", trusted],
    ["10.1.2.3", "2001:db8:7:7::1", trusted],
    ["10.1.2.3", "fd00::7", trusted],
    ["not-an-address", null, []],
  ];
  for (let round = 0; round < 2; round++) {
    for (const ipv6Prefix of [undefined, 48, 128]) {
      for (const [peer, xff, trust] of cases) {
        assert.equal(
          clientKey(peer, xff, { trusted: trust, ipv6Prefix }),
          addressKey(clientAddress(peer, xff, trust), { ipv6Prefix }),
        );
      }
    }
  }
  assert.equal(clientKey("10.1.2.3", "198.51.100.4, 10.9.9.9", { trusted }), "198.51.100.4");
  assert.equal(clientKey("2001:db8:1:2:3:4:5:6", null, { trusted: [] }), "2001:db8:1:2::/64");
  // The remembered key of a peer is its prefix's: another prefix is another answer.
  assert.equal(
    clientKey("2001:db8:1:2:3:4:5:6", null, { trusted: [], ipv6Prefix: 128 }),
    "2001:db8:1:2:3:4:5:6",
  );
  assert.equal(clientKey("::1", null, { trusted: [] }), "::1");
});
