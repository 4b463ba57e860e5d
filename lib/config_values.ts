/**
 * @module Parsers of configuration values: each gets a trimmed raw string and returns the value,
 * or throws {@linkcode Expected} saying what it accepts.
 */
import { isIpAddress, parseTrustProxy } from "./client_id.ts";
import type { FooterMode } from "./config.ts";

/** Thrown by value parsers; `resolveConfig` (in `config.ts`) turns it into a `ConfigError`. */
export class Expected extends Error {
  /** The offending entry, when it is one entry of a list rather than the whole value. */
  readonly entry: string | undefined;
  constructor(expected: string, entry?: string) {
    super(expected);
    this.entry = entry;
  }
}

/**
 * A parser of whole numbers from `min` to `max`, in digits only (a leading `+` allowed): `0x10`
 * or `1e3`, which `Number` reads, would be a surprise in a config file.
 */
export function integer(min: number, max?: number): (raw: string) => number {
  const expected = max !== undefined
    ? `an integer from ${min} to ${max}`
    : min === 0
    ? "a non-negative integer"
    : "a positive integer";
  return (raw) => {
    const n = /^\+?\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(n) || n < min || (max !== undefined && n > max)) {
      throw new Expected(expected);
    }
    return n;
  };
}

/** A parser of plain decimals (no exponent, `Infinity` or hex) up to `max`; never negative. */
export function number(positive: boolean, max = Infinity): (raw: string) => number {
  const expected = (positive ? "a positive number" : "a non-negative number") +
    (max < Infinity ? ` up to ${max}` : "");
  return (raw) => {
    const n = /^\+?(\d+\.?\d*|\.\d+)$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isFinite(n) || (positive && n === 0) || n > max) throw new Expected(expected);
    return n;
  };
}

/**
 * The longest wait a timer can hold: JavaScript runs a timeout above 2^31 - 1 ms (about 24.8
 * days) at once, which would turn a poll into a flood.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/** Seconds a timer waits: positive (or not), at most {@linkcode MAX_TIMER_MS}. */
export function seconds(positive: boolean): (raw: string) => number {
  return number(positive, Math.floor(MAX_TIMER_MS / 1000));
}

const TRUE = ["on", "true", "1", "yes"];
const FALSE = ["off", "false", "0", "no"];

/** On or off in the words people use: `on`, `true`, `1`, `yes` and their opposites, any case. */
export function boolean(raw: string): boolean {
  const lower = raw.toLowerCase();
  if (TRUE.includes(lower)) return true;
  if (FALSE.includes(lower)) return false;
  throw new Expected("on or off (or true/false, yes/no, 1/0)");
}

/** `stream`, or any {@linkcode boolean} word for on or off. */
export function footerMode(raw: string): FooterMode {
  if (raw.toLowerCase() === "stream") return "stream";
  try {
    return boolean(raw) ? "on" : "off";
  } catch {
    throw new Expected("on, stream or off");
  }
}

/** A parser of one of `values`, given in any case. */
export function oneOf<T extends string>(values: readonly T[]): (raw: string) => T {
  return (raw) => {
    const found = values.find((v) => v === raw.toLowerCase());
    if (found === undefined) throw new Expected(`one of ${values.join(", ")}`);
    return found;
  };
}

/** Any non-empty path: whether the file can be read is checked where it is read. */
export function filePath(raw: string): string {
  if (raw === "") throw new Expected("a file path");
  return raw;
}

/** A DNS name: labels of letters, digits and inner hyphens, not all digits and dots. */
const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

/** The address to listen on: an IP address (IPv6 bare or in brackets) or a DNS name, no port. */
export function host(raw: string): string {
  // `[::1]`, as in a URL, is the address inside the brackets.
  if (raw.startsWith("[") && raw.endsWith("]") && isIpAddress(raw)) return raw.slice(1, -1);
  if (!isIpAddress(raw) && (!HOST_NAME.test(raw) || /^[\d.]+$/.test(raw))) {
    throw new Expected("a host name or IP address, without a port (PORT sets that)");
  }
  return raw;
}

function httpUrl(raw: string): URL | null {
  try {
    const url = new URL(raw);
    return url.protocol === "http:" || url.protocol === "https:" ? url : null;
  } catch {
    return null;
  }
}

/** An http or https URL, without its trailing slashes. */
export function baseUrl(raw: string): string {
  const url = httpUrl(raw);
  if (url === null) throw new Expected("an http or https URL");
  // Poe's docs give `https://api.poe.com/v1` as the OpenAI base URL, and users paste it, or the
  // chat endpoint itself; chat calls add `/v1/chat/completions` themselves, and the Usage API is
  // not under `/v1`.
  let href = url.href.replace(/\/+$/, "").replace(/\/chat\/completions$/i, "");
  while (/\/v1$/i.test(href)) href = href.slice(0, -"/v1".length);
  return href;
}

/**
 * What a key is made of: printable ASCII. A space, a control character, or one a paste brings
 * along (a zero-width space, curly quotes) cannot go in a header as it is: fetch refused every
 * call with such a Poe key, which looked like Poe being unreachable.
 */
const KEY = /^[\x21-\x7e]+$/;

/** The Poe key, refused when it holds anything but printable ASCII (a paste gone wrong). */
export function apiKey(raw: string): string {
  if (!KEY.test(raw)) {
    throw new Expected(
      "a key of printable ASCII, without spaces, control, invisible or non-ASCII characters (paste it again)",
    );
  }
  return raw;
}

// deno-lint-ignore no-control-regex -- control characters are what this rejects
const CONTROL = /[\x00-\x1f\x7f]/;

/** The name a Poe key has on https://poe.com/api/keys: any text on one line. */
export function keyName(raw: string): string {
  if (CONTROL.test(raw)) throw new Expected("a key name without control characters");
  return raw;
}

/** A comma-separated list: entries trimmed, empties dropped, each checked by `entry`. */
export function list(entry: (e: string) => string): (raw: string) => readonly string[] {
  return (raw) => raw.split(",").map((e) => e.trim()).filter((e) => e !== "").map(entry);
}

/** One entry of `ALLOWED_HOSTS`: a host name without a port, or `*`; lower-cased. */
export function hostName(entry: string): string {
  if (entry !== "*" && !/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/i.test(entry)) {
    throw new Expected("comma-separated host names without ports, or *", entry);
  }
  return entry.toLowerCase();
}

/** One client key of `PROXY_API_KEYS`: printable ASCII, as a client can send it in a header. */
export function proxyKey(entry: string): string {
  if (!KEY.test(entry)) {
    throw new Expected(
      "comma-separated keys of printable ASCII, without spaces, control, invisible or non-ASCII characters",
    );
  }
  return entry;
}

/** Comma-separated IP addresses and CIDR ranges, as `parseTrustProxy` reads them. */
export function trustProxy(raw: string): readonly string[] {
  for (const entry of raw.split(",").map((e) => e.trim()).filter((e) => e !== "")) {
    try {
      parseTrustProxy(entry);
    } catch {
      // A host name would never match a peer address: every client would share one bucket.
      throw new Expected("comma-separated IP addresses or CIDR ranges (not host names)", entry);
    }
  }
  return parseTrustProxy(raw);
}

/**
 * An origin of another scheme, as a browser sends it: an app's (`app://obsidian.md`,
 * `tauri://localhost`) or an extension's (`chrome-extension://<id>`). Not `null`: sandboxed
 * frames of any site send that.
 */
const OTHER_ORIGIN = /^[a-z][a-z0-9+.-]*:\/\/[a-z0-9.-]+(:\d{1,5})?$/;

function origin(entry: string): string {
  if (entry === "*") return entry;
  const trimmed = entry.replace(/\/$/, "").toLowerCase();
  if (!/^https?:/.test(trimmed) && OTHER_ORIGIN.test(trimmed)) return trimmed;
  const url = httpUrl(entry);
  if (url === null || url.origin !== trimmed) {
    throw new Expected(
      `"*" or comma-separated origins like https://example.com or app://obsidian.md`,
      entry,
    );
  }
  return url.origin;
}

/** Comma-separated origins, deduplicated; any `*` makes the list just `["*"]`. */
export function corsOrigins(raw: string): readonly string[] {
  const origins = list(origin)(raw);
  return origins.includes("*") ? ["*"] : [...new Set(origins)];
}
