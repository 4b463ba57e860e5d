/**
 * @module The body sent to Poe, as bytes that reuse the client's own: a large request's images and
 * files (base64 data URLs) are spliced in from the bytes it arrived as, not serialized and encoded
 * again on the event loop at every call to Poe (retries and the 400 ladder's variants included).
 */

/** Bodies up to this many bytes are serialized as they are: nearly every chat request. */
export const LARGE_BODY_BYTES = 1024 * 1024;

/** Strings of messages this long or longer are looked for in the raw body. */
export const LONG_STRING_CHARS = 64 * 1024;

/**
 * Characters that JSON.stringify escapes (`"`, `\`) or that may stand raw between a JSON text's
 * tokens (tab, newline, carriage return): a string holding one never stands verbatim in a string
 * token of the body, so it is not compared with one (a long text, say). Its check also guarantees,
 * whatever the tokens found, that what is spliced is `JSON.stringify`'s own form of the string.
 */
const NOT_VERBATIM = /["\\\t\n\r]/;

/** Encodes the small pieces of JSON around the spliced strings. */
const ENCODER = new TextEncoder();

/**
 * The long strings of a large, all-ASCII request body's messages, each with where it stands in
 * the body's bytes (its quotes included). It keeps a reference to the bytes, which exist anyway,
 * for as long as the request holds it: no copy of the body is made.
 */
export class RawStrings {
  readonly #bytes: Uint8Array;
  /**
   * Each string by the object that holds it and its key there: the body sent to Poe keeps the
   * client's parts (a message's copy, say a developer one made a system one, does not).
   * Long strings of equal length hash alike in V8, so they are never looked up by value.
   */
  readonly #places: Map<object, Map<string, number>>;
  /** The strings; `#starts[i]` is the byte offset of `#values[i]`'s opening quote. */
  readonly #values: string[];
  readonly #starts: number[];

  private constructor(bytes: Uint8Array, places: Place[], values: string[], starts: number[]) {
    this.#bytes = bytes;
    this.#places = new Map();
    for (let i = 0; i < places.length; i++) {
      const [holder, key] = places[i];
      let keys = this.#places.get(holder);
      if (!keys) this.#places.set(holder, keys = new Map());
      keys.set(key, i);
    }
    this.#values = values;
    this.#starts = starts;
  }

  /**
   * Finds the long strings of `json.messages` in the body they were parsed from: `text`, decoded
   * from `bytes`. Null unless the body is large and all ASCII (then a string's offset in `text` is
   * its offset in `bytes`) and at least one string stands in it verbatim, as a base64 data URL
   * does: the client's JSON needed no escape inside it. Linear in the body, whatever it holds.
   */
  static find(text: string, bytes: Uint8Array, json: unknown): RawStrings | null {
    if (bytes.length <= LARGE_BODY_BYTES || text.length !== bytes.length) return null;
    const messages = json !== null && typeof json === "object"
      ? (json as { messages?: unknown }).messages
      : undefined;
    if (!Array.isArray(messages)) return null;
    const wanted = longStrings(messages, messages, "", []);
    if (wanted.length === 0) return null;
    const tokens = plainTokens(text);
    const places: Place[] = [];
    const values: string[] = [];
    const starts: number[] = [];
    // JSON.parse keeps the text's order, and so does the walk (a key like "1", or one repeated,
    // may reorder: that string is then serialized as usual). Each string is compared with the
    // next unclaimed token of its length only, never searched for (a search for a long string can
    // take quadratic time), so one string's cost is one comparison at most.
    let next = 0;
    for (const place of wanted) {
      const value = place[2];
      let t = next;
      while (t < tokens.length && tokens[t + 1] !== value.length) t += 2;
      if (t >= tokens.length) continue;
      const start = tokens[t];
      if (text.slice(start + 1, start + 1 + value.length) !== value) continue;
      next = t + 2;
      places.push(place);
      values.push(value);
      starts.push(start);
    }
    return values.length > 0 ? new RawStrings(bytes, places, values, starts) : null;
  }

  /** How many places' strings are spliced from the raw body. */
  get size(): number {
    return this.#values.length;
  }

  /**
   * `body` serialized as JSON, as the UTF-8 bytes of `JSON.stringify(body)` exactly: each string
   * found in the raw body is serialized as a placeholder, replaced by the raw bytes. A body that
   * holds none of them (its messages all clipped, say) is a string, as `JSON.stringify` gives it.
   */
  serialize(body: unknown): Uint8Array<ArrayBuffer> | string {
    // Unguessable, so no string of the client's can pass for it.
    const token = crypto.randomUUID();
    const spliced: number[] = [];
    const places = this.#places;
    const values = this.#values;
    const text = JSON.stringify(body, function (this: object, key: string, value: unknown) {
      if (typeof value !== "string" || value.length < LONG_STRING_CHARS) return value;
      const i = places.get(this)?.get(key);
      // The same string, unless the body was changed since: then it is serialized as it is now.
      if (i === undefined || values[i] !== value) return value;
      spliced.push(i);
      return token;
    });
    if (spliced.length === 0) return text;
    const pieces = text.split(`"${token}"`);
    if (pieces.length !== spliced.length + 1) return JSON.stringify(body);
    const encoded = pieces.map((p) => ENCODER.encode(p));
    let size = 0;
    for (const e of encoded) size += e.length;
    for (const i of spliced) size += values[i].length + 2;
    const out = new Uint8Array(size);
    let offset = 0;
    for (let k = 0; k < encoded.length; k++) {
      out.set(encoded[k], offset);
      offset += encoded[k].length;
      if (k === spliced.length) break;
      const i = spliced[k];
      const start = this.#starts[i];
      const end = start + values[i].length + 2;
      out.set(this.#bytes.subarray(start, end), offset);
      offset += end - start;
    }
    return out;
  }
}

/** Where a string stands in the parsed body: the object or array that holds it, its key, itself. */
type Place = [holder: object, key: string, value: string];

/**
 * Adds the strings within `value` (held by `holder` at `key`) of LONG_STRING_CHARS or more that
 * may stand verbatim in the body to `out`, in the order of the text they were parsed from.
 */
function longStrings(value: unknown, holder: object, key: string, out: Place[]): Place[] {
  if (typeof value === "string") {
    if (value.length >= LONG_STRING_CHARS && !NOT_VERBATIM.test(value)) {
      out.push([holder, key, value]);
    }
  } else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) longStrings(value[i], value, String(i), out);
  } else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) longStrings(v, value, k, out);
  }
  return out;
}

/**
 * The string tokens of a JSON text of LONG_STRING_CHARS characters or more with no escape in them,
 * in order, as pairs: the offset of the opening quote, then the length between the quotes. One
 * pass from quote to quote.
 */
function plainTokens(text: string): number[] {
  const out: number[] = [];
  let backslash = nextOrEnd(text, "\\", 0);
  for (let open = text.indexOf('"'); open >= 0;) {
    let close = text.indexOf('"', open + 1);
    if (close < 0) break;
    if (backslash < close) {
      // Escapes inside: its own form differs from its value's. Backslashes stand only in strings.
      while (isEscaped(text, close)) close = text.indexOf('"', close + 1);
      if (close < 0) break;
      backslash = nextOrEnd(text, "\\", close);
    } else if (close - open - 1 >= LONG_STRING_CHARS) out.push(open, close - open - 1);
    open = text.indexOf('"', close + 1);
  }
  return out;
}

function nextOrEnd(text: string, char: string, from: number): number {
  const i = text.indexOf(char, from);
  return i < 0 ? text.length : i;
}

/** Whether the quote at `at` is escaped: an odd run of backslashes stands before it. */
function isEscaped(text: string, at: number): boolean {
  let n = 0;
  while (text.charCodeAt(at - 1 - n) === 0x5c) n++;
  return n % 2 === 1;
}
