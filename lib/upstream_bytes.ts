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
 * tokens (tab, newline, carriage return): a string holding one is not taken from the raw body,
 * where an occurrence of it could differ from its serialized form. Other control characters never
 * stand raw in valid JSON, and an ASCII body holds no other character JSON.stringify escapes.
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
  /** The strings, each once; `#starts[i]` is the byte offset of `#values[i]`'s opening quote. */
  readonly #values: string[];
  readonly #starts: number[];

  private constructor(bytes: Uint8Array, values: string[], starts: number[]) {
    this.#bytes = bytes;
    this.#values = values;
    this.#starts = starts;
  }

  /**
   * Finds the long strings of `json.messages` in the body they were parsed from: `text`, decoded
   * from `bytes`. Null unless the body is large and all ASCII (then a string's offset in `text` is
   * its offset in `bytes`) and at least one string stands in it verbatim, as a base64 data URL
   * does: the client's JSON needed no escape inside it.
   */
  static find(text: string, bytes: Uint8Array, json: unknown): RawStrings | null {
    if (bytes.length <= LARGE_BODY_BYTES || text.length !== bytes.length) return null;
    const messages = json !== null && typeof json === "object"
      ? (json as { messages?: unknown }).messages
      : undefined;
    if (!Array.isArray(messages)) return null;
    const values: string[] = [];
    const starts: number[] = [];
    for (const value of longStrings(messages, [])) {
      if (values.includes(value) || NOT_VERBATIM.test(value)) continue;
      const at = quotedAt(text, value);
      if (at < 0) continue;
      values.push(value);
      starts.push(at);
    }
    return values.length > 0 ? new RawStrings(bytes, values, starts) : null;
  }

  /** How many strings are spliced from the raw body. */
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
    const text = JSON.stringify(body, (_key, value) => {
      if (typeof value !== "string" || value.length < LONG_STRING_CHARS) return value;
      const i = this.#values.indexOf(value);
      if (i < 0) return value;
      spliced.push(i);
      return token;
    });
    if (spliced.length === 0) return text;
    const pieces = text.split(`"${token}"`);
    if (pieces.length !== spliced.length + 1) return JSON.stringify(body);
    const encoded = pieces.map((p) => ENCODER.encode(p));
    let size = 0;
    for (const e of encoded) size += e.length;
    for (const i of spliced) size += this.#values[i].length + 2;
    const out = new Uint8Array(size);
    let offset = 0;
    for (let k = 0; k < encoded.length; k++) {
      out.set(encoded[k], offset);
      offset += encoded[k].length;
      if (k === spliced.length) break;
      const i = spliced[k];
      const start = this.#starts[i];
      const end = start + this.#values[i].length + 2;
      out.set(this.#bytes.subarray(start, end), offset);
      offset += end - start;
    }
    return out;
  }
}

/** Adds the strings of `value` (arrays and objects walked) of LONG_STRING_CHARS or more to `out`. */
function longStrings(value: unknown, out: string[]): string[] {
  if (typeof value === "string") {
    if (value.length >= LONG_STRING_CHARS) out.push(value);
  } else if (Array.isArray(value)) {
    for (const v of value) longStrings(v, out);
  } else if (value !== null && typeof value === "object") {
    for (const v of Object.values(value)) longStrings(v, out);
  }
  return out;
}

/** The offset of `value`'s opening quote where it stands quoted in `text`, or -1. */
function quotedAt(text: string, value: string): number {
  for (let from = 1;;) {
    const i = text.indexOf(value, from);
    if (i < 0) return -1;
    if (text.charCodeAt(i - 1) === 0x22 && text.charCodeAt(i + value.length) === 0x22) return i - 1;
    from = i + 1;
  }
}
