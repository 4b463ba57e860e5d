/**
 * @module Tells answers that are data for a program rather than prose for a person: text that is
 * one JSON document (an agent asked for JSON in its prompt, without `response_format`) or one
 * http(s) URL (what audio and video bots answer, and a program fetches). Such an answer gets no
 * footer: after the closing brace it breaks the parse, after the URL the fetch.
 */

/** One http(s) URL and nothing else; Poe's CDN links are about 90 characters. */
const URL_TEXT = /^https?:\/\/\S+$/i;
/** Longer "URLs" are not links anyone fetches, and a stream need not keep more to tell. */
const MAX_URL_CHARS = 16 * 1024;

/** Whether `text`, trimmed, is one JSON object or array. */
export function isJsonDocument(text: string): boolean {
  return jsonDocument(text.trim());
}

function jsonDocument(t: string): boolean {
  const first = t[0];
  if (first !== "{" && first !== "[") return false;
  try {
    JSON.parse(t);
    return true;
  } catch {
    return false;
  }
}

/** Whether `text`, trimmed, is one http(s) URL with no whitespace inside. */
export function isBareUrl(text: string): boolean {
  const t = text.trim();
  return t.length <= MAX_URL_CHARS && URL_TEXT.test(t);
}

/** Whether `text` is data: one JSON document or one URL (see the module's comment). */
export function isDataText(text: string): boolean {
  const t = text.trim();
  const first = t[0];
  if (first === "h" || first === "H") return t.length <= MAX_URL_CHARS && URL_TEXT.test(t);
  return jsonDocument(t);
}

/** Text kept to check a streamed answer that opens like JSON; past it, only its ends count. */
const KEEP_CHARS = 256 * 1024;

/** What a streamed text may still be: null until its first visible character. */
type Kind = "json" | "url" | "prose" | null;

/**
 * Whether a streamed answer's text is data, seen delta by delta. Text that opens with anything
 * but `{`, `[` or `h` is settled at its first visible character and kept no further, and so is
 * text whose first characters cannot open `http://` or `https://` ("Hello" is settled at once).
 * Text that opens like JSON is kept (up to {@linkcode KEEP_CHARS}) and parsed at the end, as a
 * non-streamed answer is; past that size, matching first and last brackets decide. Text that
 * opens like a URL is kept until whitespace is followed by more text, or it grows too long.
 */
export class TextShape {
  #kind: Kind = null;
  /** A URL's first visible characters, until they show its scheme. */
  #head = "";
  /** A URL's text ended with whitespace: anything visible after it makes it prose. */
  #gap = false;
  #first = "";
  #last = "";
  #pieces: string[] = [];
  #size = 0;

  /** A visible character came: the text is more than whitespace. */
  get visible(): boolean {
    return this.#kind !== null;
  }

  /** Deltas must still be looked at: no text yet, or text that may be data. */
  get watching(): boolean {
    return this.#kind !== "prose";
  }

  /** The whole text is one JSON object or array. */
  get json(): boolean {
    if (this.#kind !== "json") return false;
    if (this.#size > KEEP_CHARS) {
      return (this.#first === "{" && this.#last === "}") ||
        (this.#first === "[" && this.#last === "]");
    }
    return isJsonDocument(this.#pieces.join(""));
  }

  /** The whole text is one http(s) URL. */
  get url(): boolean {
    return this.#kind === "url" && isBareUrl(this.#pieces.join(""));
  }

  /** The whole text is data: a JSON document or a URL. */
  get data(): boolean {
    return this.json || this.url;
  }

  /** Takes the next piece of text. */
  add(piece: string): void {
    if (this.#kind === "prose") return;
    let visible = piece;
    if (this.#kind === null) {
      visible = piece.trimStart();
      const first = visible[0];
      if (first === undefined) {
        this.#keep(piece);
        return;
      }
      this.#first = first;
      this.#kind = first === "{" || first === "["
        ? "json"
        : first === "h" || first === "H"
        ? "url"
        : "prose";
    }
    if (this.#kind === "url") this.#url(visible);
    else if (this.#kind === "json") {
      const t = piece.trim();
      if (t !== "") this.#last = t[t.length - 1];
    }
    if (this.#kind === "prose") {
      this.#pieces = [];
      return;
    }
    this.#keep(piece);
  }

  #keep(piece: string): void {
    if (this.#size > KEEP_CHARS) return;
    this.#size += piece.length;
    if (this.#size > KEEP_CHARS) this.#pieces = [];
    else this.#pieces.push(piece);
  }

  /** Settles a URL-like text as prose as soon as it cannot be one URL. */
  #url(visible: string): void {
    if ((this.#gap && /\S/.test(visible)) || /\s\S/.test(visible)) {
      this.#kind = "prose";
      return;
    }
    if (visible !== "") this.#gap = /\s$/.test(visible);
    if (this.#head.length < 8) {
      this.#head = (this.#head + visible).slice(0, 8).toLowerCase();
      const h = this.#head;
      const scheme = h.startsWith("http://") || h.startsWith("https://") ||
        "http://".startsWith(h) || "https://".startsWith(h);
      if (!scheme) this.#kind = "prose";
    }
    if (this.#size + visible.length > MAX_URL_CHARS) this.#kind = "prose";
  }
}
