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

/**
 * The shape of a streamed answer's text, seen delta by delta without keeping it: whether it opens
 * with `{` or `[` and ends with the matching bracket. Only the first and last visible characters
 * are kept, so a long answer costs nothing; once the text opens with anything else, the deltas
 * need no more looking at.
 */
export class TextShape {
  #first = "";
  #last = "";

  /** Deltas must still be looked at: no text yet, or text that may be JSON. */
  get watching(): boolean {
    return this.#first === "" || this.#first === "{" || this.#first === "[";
  }

  /** The text so far opens and closes like a JSON object or array. */
  get json(): boolean {
    return (this.#first === "{" && this.#last === "}") ||
      (this.#first === "[" && this.#last === "]");
  }

  /** Takes the next piece of text. */
  add(piece: string): void {
    if (!this.watching) return;
    const t = piece.trim();
    if (t === "") return;
    if (this.#first === "") this.#first = t[0];
    this.#last = t[t.length - 1];
  }
}
