/**
 * @module Inbound API keys: parsing (and checking them at startup), constant-time checking, safe
 * display names.
 */
import { createHash } from "node:crypto";
import { StartupError } from "./command_line.ts";
import type { Config } from "./config.ts";
import { ProxyError } from "./errors.ts";

/**
 * The inbound keys from `PROXY_API_KEYS` (comma-separated) and the text of `PROXY_API_KEYS_FILE`
 * (one key a line; blank lines, lines starting with `#` and a `#` comment after whitespace
 * ignored). Keys are trimmed and deduplicated, first occurrence first. Either source may be null.
 *
 * @throws {Error} when a line of the file holds more than one word, naming the line only.
 */
export function parseKeys(commaList: string | null, fileText: string | null): string[] {
  const keys = new Set<string>();
  for (const key of commaList?.split(",") ?? []) {
    if (key.trim() !== "") keys.add(key.trim());
  }
  const lines = fileText?.split(/\r?\n/) ?? [];
  for (let i = 0; i < lines.length; i++) {
    // A comment after a key, as in `.env` files: `bob-key  # Bob's laptop`.
    const key = lines[i].replace(/(^|\s)#.*$/, "").trim();
    if (key === "") continue;
    // deno-lint-ignore no-control-regex -- control characters are what this rejects
    if (/[\s\x00-\x1f\x7f]/.test(key)) {
      // The line number only: the text may be a key.
      throw new Error(`line ${i + 1} holds more than one word; write one key a line`);
    }
    keys.add(key);
  }
  return [...keys];
}

/**
 * The configured inbound keys. Only SHA-256 digests of the keys are kept, so a key never sits in
 * this object in a form that could be logged by accident.
 */
export class ApiKeys {
  /** False when no keys are configured: every request is let in. */
  readonly enabled: boolean;
  #digests: Uint8Array[];

  /** Keeps digests of `keys` (as from {@linkcode parseKeys}); names follow their order. */
  constructor(keys: readonly string[]) {
    this.#digests = keys.map(digest);
    this.enabled = keys.length > 0;
  }

  /** Number of configured keys. */
  get size(): number {
    return this.#digests.length;
  }

  /**
   * The display name (`"key-1"`, `"key-2"`, ... in configuration order; never any part of a key)
   * of the key sent as `Authorization: Bearer <key>` or `x-api-key: <key>`, or null when neither
   * header carries a configured key. Each candidate is checked in constant time against every key.
   * When keys are disabled, returns null as well; check {@linkcode enabled} first.
   */
  identify(headers: Headers): string | null {
    let found = -1;
    for (const candidate of candidates(headers)) {
      const d = digest(candidate);
      for (let i = 0; i < this.#digests.length; i++) {
        // No early exit: every key is compared whatever the outcome.
        if (bytesEqual(d, this.#digests[i]) && found < 0) found = i;
      }
    }
    return found < 0 ? null : `key-${found + 1}`;
  }

  /** Whether `text` is one of the keys: a key pasted into another field must not be logged. */
  isKey(text: string): boolean {
    if (!this.enabled || text.length === 0) return false;
    const d = digest(text);
    return this.#digests.some((k) => bytesEqual(d, k));
  }
}

/** The 401 `authentication_error` for a missing or wrong key; it never repeats what was sent. */
export function authenticationError(): ProxyError {
  return new ProxyError(
    401,
    "Missing or invalid API key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
    {
      type: "authentication_error",
      code: "invalid_api_key",
      headers: { "www-authenticate": "Bearer" },
    },
  );
}

/**
 * Compares two strings in time that depends only on their lengths, never on where they differ.
 * Both are compared as UTF-8 bytes over the longer length; a length mismatch is folded into the
 * result rather than returned early.
 */
export function timingSafeEqual(a: string, b: string): boolean {
  const encoder = new TextEncoder();
  return bytesEqual(encoder.encode(a), encoder.encode(b));
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  const length = Math.max(a.length, b.length);
  let diff = a.length ^ b.length;
  for (let i = 0; i < length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

function digest(key: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(key, "utf8").digest());
}

/** The non-empty key candidates of a request: the Bearer token, then `x-api-key`. */
function candidates(headers: Headers): string[] {
  const out: string[] = [];
  const authorization = headers.get("authorization")?.trim() ?? "";
  const match = /^bearer[ \t]+/i.exec(authorization);
  if (match) {
    const token = authorization.slice(match[0].length).trim();
    if (token !== "") out.push(token);
  }
  const apiKey = headers.get("x-api-key")?.trim() ?? "";
  if (apiKey !== "") out.push(apiKey);
  return out;
}

/**
 * The inbound keys of `PROXY_API_KEYS` and the text of `PROXY_API_KEYS_FILE` (null when unset), as
 * a startup takes them.
 *
 * @throws {StartupError} when a line of the file holds more than one word, or the file holds no
 * key.
 */
export function inboundKeys(
  config: Pick<Config, "proxyApiKeys" | "proxyApiKeysFile">,
  fileText: string | null,
): string[] {
  let keys: string[];
  try {
    keys = parseKeys(config.proxyApiKeys.join(","), fileText);
  } catch (err) {
    throw new StartupError(`PROXY_API_KEYS_FILE: ${(err as Error).message}`);
  }
  // An emptied file (a key rotation half done, an empty mounted secret) must not open the door.
  if (fileText !== null && keys.length === 0) {
    throw new StartupError(
      `PROXY_API_KEYS_FILE ${
        JSON.stringify(config.proxyApiKeysFile)
      } holds no key: refusing to start without inbound keys. Put one key a line in it, or unset it.`,
    );
  }
  return keys;
}
