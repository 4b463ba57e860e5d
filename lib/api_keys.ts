/**
 * @module Inbound API keys: parsing (and checking them at startup), constant-time checking, safe
 * display names, hiding a key pasted where it does not belong.
 */
import { createHash } from "node:crypto";
import { StartupError } from "./command_line.ts";
import type { Config } from "./config.ts";
import { ProxyError } from "./errors.ts";
import { HIDDEN, Redactor } from "./redact.ts";

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
    if (/\s/.test(key)) {
      // The line number only: the text may be a key.
      throw new Error(`line ${i + 1} holds more than one word; write one key a line`);
    }
    if (!/^[\x21-\x7e]+$/.test(key)) {
      throw new Error(
        `line ${
          i + 1
        } holds a character that is not printable ASCII (an invisible one from a paste?)`,
      );
    }
    keys.add(key);
  }
  return [...keys];
}

/** One set of keys, swapped whole on a reload so that a request sees either the old or the new. */
interface KeySet {
  digests: Uint8Array[];
  /** The display name of each digest. */
  names: string[];
  /** Hides the keys of 8 characters or more inside any text. */
  inside: Redactor;
  /** Lengths of the keys under 8 characters: hidden only as a whole text, never inside one. */
  shortLengths: Set<number>;
}

/**
 * The configured inbound keys. They are checked against SHA-256 digests; the keys themselves sit
 * only in a private {@linkcode Redactor}, which hides one pasted into another text, so a key never
 * sits in this object in a form that could be logged by accident.
 */
export class ApiKeys {
  /**
   * False when no keys are configured: every request is let in. Fixed for the object's life
   * (the browser guard depends on it): {@linkcode replace} never empties it.
   */
  readonly enabled: boolean;
  #set: KeySet;
  /** The name of every key seen since startup, by digest: a key kept by a reload keeps its name. */
  #named = new Map<string, string>();
  #lastNumber = 0;

  /** Keeps digests of `keys` (as from {@linkcode parseKeys}); names follow their order. */
  constructor(keys: readonly string[]) {
    this.#set = this.#build(keys);
    this.enabled = keys.length > 0;
  }

  /** Number of configured keys. */
  get size(): number {
    return this.#set.digests.length;
  }

  /**
   * Takes `keys` in place of the current ones, for every request that starts afterwards (a reload
   * of `PROXY_API_KEYS_FILE`). A key kept keeps its name; a new key gets the next number not used
   * since startup, so a name never passes from a revoked key to another (the dashboard's rows and
   * the client buckets are by name).
   *
   * @throws {Error} when `keys` is empty while keys are enabled, or not empty while they are not.
   */
  replace(keys: readonly string[]): void {
    if ((keys.length > 0) !== this.enabled) {
      throw new Error(
        this.enabled
          ? "no inbound keys: the proxy would be open"
          : "inbound keys are set at startup only",
      );
    }
    this.#set = this.#build(keys);
  }

  #build(keys: readonly string[]): KeySet {
    const digests = keys.map(digest);
    const names = digests.map((d) => {
      const id = Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
      let name = this.#named.get(id);
      if (name === undefined) {
        name = `key-${++this.#lastNumber}`;
        this.#named.set(id, name);
      }
      return name;
    });
    return {
      digests,
      names,
      inside: new Redactor(keys),
      shortLengths: new Set(keys.filter((k) => k.length < MIN_HIDDEN_INSIDE).map((k) => k.length)),
    };
  }

  /**
   * The display name (`"key-1"`, `"key-2"`, ... in configuration order at startup, then in order
   * of arrival, see {@linkcode replace}; never any part of a key)
   * of the key sent as `Authorization: Bearer <key>` or `x-api-key: <key>`, or null when neither
   * header carries a configured key. Each candidate is checked in constant time against every key.
   * When keys are disabled, returns null as well; check {@linkcode enabled} first.
   */
  identify(headers: Headers): string | null {
    const set = this.#set;
    let found = -1;
    for (const candidate of candidates(headers)) {
      const d = digest(candidate);
      for (let i = 0; i < set.digests.length; i++) {
        // No early exit: every key is compared whatever the outcome.
        if (bytesEqual(d, set.digests[i]) && found < 0) found = i;
      }
    }
    return found < 0 ? null : set.names[found];
  }

  /** Whether `text` is one of the keys: a key pasted into another field must not be logged. */
  isKey(text: string): boolean {
    if (!this.enabled || text.length === 0) return false;
    const d = digest(text);
    return this.#set.digests.some((k) => bytesEqual(d, k));
  }

  /**
   * `text` made safe to log and show: a key in it, whole or shortened (as the Poe key is hidden),
   * becomes `(hidden)`, and so does a text that is a key under 8 characters (which would hide
   * parts of other words inside a text). Cheap when no key can be there: one `includes` a key.
   */
  hide(text: string): string {
    const set = this.#set;
    if (set.shortLengths.has(text.length) && this.isKey(text)) return HIDDEN;
    return set.inside.redact(text);
  }
}

/** Keys this long or longer are hidden inside other texts too (the {@linkcode Redactor}'s floor). */
const MIN_HIDDEN_INSIDE = 8;

/** The 401 `authentication_error` for a missing or wrong key; it never repeats what was sent. */
export function authenticationError(): ProxyError {
  return new ProxyError(
    401,
    "Missing or invalid API key for this proxy: send one of its PROXY_API_KEYS (not the Poe key) " +
      "as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
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

/** How many different keys a request sent (`Authorization: Bearer` and `x-api-key`). */
export function keysSent(headers: Headers): number {
  const [first, second] = candidates(headers);
  return first === undefined ? 0 : second === undefined || second === first ? 1 : 2;
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
 * a startup (or a reload of the file) takes them.
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
      } holds no key: refusing to run without inbound keys. Put one key a line in it, or unset it.`,
    );
  }
  return keys;
}
