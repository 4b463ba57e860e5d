/** @module Who the client is: the peer address, or X-Forwarded-For behind trusted proxies only. */

/** A parsed address: 4 bytes for IPv4 (IPv4-mapped IPv6 included), 16 for IPv6. */
type Bytes = Uint8Array;

interface Range {
  bytes: Bytes;
  /** Prefix length in bits. */
  prefix: number;
}

/**
 * Parses `TRUST_PROXY`: comma-separated IP addresses or CIDR ranges (`10.0.0.0/8`, `::1`,
 * `fd00::/8`), blanks ignored. Returns them normalised (`::ffff:10.0.0.1` becomes `10.0.0.1`,
 * IPv6 in RFC 5952 form). Throws an `Error` naming the first entry that is neither.
 */
export function parseTrustProxy(value: string): string[] {
  const out: string[] = [];
  for (const raw of value.split(",")) {
    const entry = raw.trim();
    if (entry === "") continue;
    const range = parseRange(entry);
    if (!range) {
      throw new Error(
        `TRUST_PROXY entries must be IP addresses or CIDR ranges: got ${JSON.stringify(entry)}`,
      );
    }
    const full = range.prefix === range.bytes.length * 8;
    const text = formatBytes(range.bytes) + (full ? "" : `/${range.prefix}`);
    if (!out.includes(text)) out.push(text);
  }
  return out;
}

/**
 * The address that identifies the client. `peer` is the address of the TCP peer. The
 * `X-Forwarded-For` value is used only when the peer itself is in `trusted` (addresses or CIDR
 * ranges, as from {@linkcode parseTrustProxy}); then the answer is its right-most valid address
 * that is not trusted, because everything left of that was written by someone we do not trust.
 * Malformed entries are skipped; if every valid entry is trusted, the left-most one is returned.
 * Addresses are normalised; a peer that is not an IP address is returned trimmed, as it is.
 */
export function clientAddress(
  peer: string,
  forwardedFor: string | null,
  trusted: readonly string[],
): string {
  const peerBytes = parseAddress(peer);
  if (!peerBytes) return peer.trim();
  const peerText = formatBytes(peerBytes);
  if (!forwardedFor || trusted.length === 0) return peerText;
  const ranges = trustedRanges(trusted);
  if (!inRanges(peerBytes, ranges)) return peerText;
  const hops = forwardedFor.split(",");
  let leftmost: string | null = null;
  for (let i = hops.length - 1; i >= 0; i--) {
    const bytes = parseAddress(stripPort(hops[i].trim()));
    if (!bytes) continue;
    if (!inRanges(bytes, ranges)) return formatBytes(bytes);
    leftmost = formatBytes(bytes);
  }
  return leftmost ?? peerText;
}

/** Options of {@linkcode addressKey} and {@linkcode clientKey}. */
export interface AddressKeyOptions {
  /**
   * `RATE_LIMIT_IPV6_PREFIX`: bits of a global IPv6 address that name its client; 128 keys each
   * address alone. Default: `64`.
   */
  ipv6Prefix?: number;
}

/**
 * The rate-limit key of a client address. IPv4 addresses (IPv4-mapped IPv6 included) are keyed as
 * they are, and so are IPv6 loopback (`::1`), link-local (`fe80::/10`) and unique-local
 * (`fc00::/7`) addresses: those are the devices of one network, each its own client. A global
 * IPv6 address is reduced to its network of `ipv6Prefix` bits (one host on the internet usually
 * owns a whole `/64`, so rotating within it gains nothing), shown as `2001:db8:1:2::/64`.
 * Anything that is not an IP address is returned as it is.
 */
export function addressKey(address: string, options: AddressKeyOptions = {}): string {
  const bytes = parseAddress(address);
  if (!bytes) return address;
  const prefix = options.ipv6Prefix ?? 64;
  if (bytes.length === 4 || prefix >= 128 || isLocalIPv6(bytes)) return formatBytes(bytes);
  return `${formatBytes(maskBytes(bytes, prefix))}/${prefix}`;
}

/**
 * The `/64` network of a link-local or unique-local IPv6 address key ({@linkcode addressKey} keys
 * those whole), shown as `fd00:1:2:3::/64`; null for any other key. A host of the network can take
 * any number of addresses in it: its wrong keys are counted there too.
 */
export function localNetworkKey(key: string): string | null {
  // Keys are written in lower case: only `fe80::…` and `fc…`/`fd…` can be such addresses.
  if (key.charCodeAt(0) !== 0x66) return null;
  const bytes = parseAddress(key);
  if (!bytes || bytes.length === 4 || !isLocalIPv6(bytes) || bytes[0] === 0) return null;
  return `${formatBytes(maskBytes(bytes, 64))}/64`;
}

/** Loopback, link-local or unique-local: an address of this machine or of its own network. */
function isLocalIPv6(bytes: Bytes): boolean {
  const loopback = bytes[15] === 1 && bytes.subarray(0, 15).every((b) => b === 0);
  return loopback || (bytes[0] === 0xfe && (bytes[1] & 0xc0) === 0x80) ||
    (bytes[0] & 0xfe) === 0xfc;
}

/** Keys of peers seen lately, by IPv6 prefix; a new peer costs a parse, a known one a lookup. */
const peerKeys = new Map<number, Map<string, string>>();
const MAX_PEER_KEYS = 4096;

/** Options of {@linkcode clientKey}. */
export interface ClientKeyOptions extends AddressKeyOptions {
  /** `TRUST_PROXY`: addresses or CIDR ranges, as from {@linkcode parseTrustProxy}. */
  trusted: readonly string[];
}

/**
 * The rate-limit key of a request's client: {@linkcode addressKey} of
 * {@linkcode clientAddress}. When `X-Forwarded-For` cannot count, the answer depends on the peer
 * alone and is remembered.
 */
export function clientKey(
  peer: string,
  forwardedFor: string | null,
  options: ClientKeyOptions,
): string {
  const { trusted } = options;
  if (forwardedFor && trusted.length > 0) {
    return addressKey(clientAddress(peer, forwardedFor, trusted), options);
  }
  const prefix = options.ipv6Prefix ?? 64;
  let known = peerKeys.get(prefix);
  if (known === undefined) {
    known = new Map();
    peerKeys.set(prefix, known);
  }
  let key = known.get(peer);
  if (key === undefined) {
    if (known.size >= MAX_PEER_KEYS) known.clear();
    key = addressKey(clientAddress(peer, null, trusted), options);
    known.set(peer, key);
  }
  return key;
}

/** Whether `address` is an IP address (IPv4, IPv6, optionally bracketed or with a zone). */
export function isIpAddress(address: string): boolean {
  return parseAddress(address) !== null;
}

const rangeCache = new WeakMap<readonly string[], Range[]>();

function trustedRanges(trusted: readonly string[]): Range[] {
  let ranges = rangeCache.get(trusted);
  if (!ranges) {
    ranges = trusted.map(parseRange).filter((r): r is Range => r !== null);
    rangeCache.set(trusted, ranges);
  }
  return ranges;
}

function inRanges(bytes: Bytes, ranges: readonly Range[]): boolean {
  return ranges.some((range) => inRange(bytes, range));
}

function inRange(bytes: Bytes, range: Range): boolean {
  if (bytes.length !== range.bytes.length) return false;
  const whole = range.prefix >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== range.bytes[i]) return false;
  const rest = range.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[whole] & mask) === (range.bytes[whole] & mask);
}

function parseRange(text: string): Range | null {
  const slash = text.indexOf("/");
  const bytes = parseAddress(slash < 0 ? text : text.slice(0, slash));
  if (!bytes) return null;
  const bits = bytes.length * 8;
  if (slash < 0) return { bytes, prefix: bits };
  const prefixText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return null;
  let prefix = Number(prefixText);
  // An IPv4-mapped range such as ::ffff:10.0.0.0/104 was converted to IPv4 by parseAddress.
  if (bytes.length === 4 && /:/.test(text.slice(0, slash))) prefix -= 96;
  if (prefix < 0 || prefix > bits) return null;
  return { bytes: maskBytes(bytes, prefix), prefix };
}

function maskBytes(bytes: Bytes, prefix: number): Bytes {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] = bytes[i] & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

/** Strips a port from `1.2.3.4:80` or `[::1]:80` (some proxies include it). */
function stripPort(text: string): string {
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(text);
  if (v4) return v4[1];
  const v6 = /^\[([^\]]+)\]:\d{1,5}$/.exec(text);
  return v6 ? v6[1] : text;
}

/** Parses an address; IPv4-mapped IPv6 becomes IPv4. Null when malformed. */
function parseAddress(input: string): Bytes | null {
  let text = input.trim();
  if (text.length > 64) return null;
  if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
  const zone = text.indexOf("%");
  if (zone >= 0 && text.includes(":")) text = text.slice(0, zone);
  if (!text.includes(":")) return parseIPv4(text);
  const v6 = parseIPv6(text);
  if (!v6) return null;
  const mapped = v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff;
  return mapped ? v6.slice(12) : v6;
}

function parseIPv4(text: string): Bytes | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    // No leading zeros: "010" is octal to some parsers and decimal to others.
    if (!/^(0|[1-9]\d{0,2})$/.test(parts[i])) return null;
    const n = Number(parts[i]);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

function parseIPv6(text: string): Bytes | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] === "" ? [] : halves[0].split(":");
  const tail = halves.length === 2 ? (halves[1] === "" ? [] : halves[1].split(":")) : [];
  const groups: number[] = [];
  const read = (parts: string[], isLast: boolean): number[] | null => {
    const out: number[] = [];
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (isLast && i === parts.length - 1 && part.includes(".")) {
        const v4 = parseIPv4(part);
        if (!v4) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(part)) {
        out.push(parseInt(part, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const headGroups = read(head, halves.length === 1);
  const tailGroups = read(tail, true);
  if (!headGroups || !tailGroups) return null;
  const count = headGroups.length + tailGroups.length;
  if (halves.length === 1) {
    if (count !== 8) return null;
    groups.push(...headGroups);
  } else {
    if (count > 7) return null;
    groups.push(...headGroups, ...new Array(8 - count).fill(0), ...tailGroups);
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i] >> 8;
    out[2 * i + 1] = groups[i] & 0xff;
  }
  return out;
}

/** IPv4 dotted decimal, or IPv6 in RFC 5952 form (lower case, longest zero run as `::`). */
function formatBytes(bytes: Bytes): string {
  if (bytes.length === 4) return bytes.join(".");
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((bytes[2 * i] << 8) | bytes[2 * i + 1]);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  const left = hex.slice(0, bestStart).join(":");
  const right = hex.slice(bestStart + bestLen).join(":");
  return `${left}::${right}`;
}
