/**
 * @module Tells answers whose text is a JSON document. Such an answer gets no footer: agents that
 * ask for JSON in the prompt, without `response_format`, parse the text as it comes, and a footer
 * after the closing brace would break them.
 */

/** Whether `text`, trimmed, is one JSON object or array. */
export function isJsonDocument(text: string): boolean {
  const t = text.trim();
  const first = t[0];
  if (first !== "{" && first !== "[") return false;
  try {
    JSON.parse(t);
    return true;
  } catch {
    return false;
  }
}

/** Text kept to check a streamed answer that opens like JSON; past it, only its ends count. */
const KEEP_CHARS = 256 * 1024;

/**
 * Whether a streamed answer's text is a JSON document, seen delta by delta. Text that opens with
 * anything but `{` or `[` is settled at its first visible character and kept no further; text
 * that opens like JSON is kept (up to {@linkcode KEEP_CHARS}) and parsed at the end, as a
 * non-streamed answer is. Past that size, matching first and last brackets decide.
 */
export class TextShape {
  #first = "";
  #last = "";
  #pieces: string[] = [];
  #size = 0;

  /** Deltas must still be looked at: no text yet, or text that may be JSON. */
  get watching(): boolean {
    return this.#first === "" || this.#first === "{" || this.#first === "[";
  }

  /** The whole text is one JSON object or array. */
  get json(): boolean {
    if (this.#first !== "{" && this.#first !== "[") return false;
    if (this.#size > KEEP_CHARS) {
      return (this.#first === "{" && this.#last === "}") ||
        (this.#first === "[" && this.#last === "]");
    }
    return isJsonDocument(this.#pieces.join(""));
  }

  /** Takes the next piece of text. */
  add(piece: string): void {
    if (!this.watching) return;
    const t = piece.trim();
    if (t !== "") {
      if (this.#first === "") this.#first = t[0];
      this.#last = t[t.length - 1];
    }
    if (!this.watching || this.#size > KEEP_CHARS) return;
    this.#size += piece.length;
    if (this.#size > KEEP_CHARS) this.#pieces = [];
    else this.#pieces.push(piece);
  }
}
