/**
 * @module A PDF's pages, counted from its bytes without parsing it: its page objects, those
 * compressed in its object streams (inflated within a budget), a linearized file's page count, or
 * at last a guess from its size. Bounded work on any data, hostile or not.
 */
import { inflateSync } from "node:zlib";

/**
 * Bytes per page to guess a PDF's pages by when no page object can be read, not even in its
 * object streams (an encrypted file, a filter other than Flate). A page of text takes 5 to 50 KB,
 * a scanned one 100 KB to 1 MB: this middle figure under-counts the first and over-counts the
 * second, so the guess stops at {@linkcode PDF_GUESSED_PAGES_MAX}.
 */
export const PDF_BYTES_PER_PAGE = 64 * 1024;

/**
 * The most pages a guess from a PDF's size may give: a one-page scan of 6 MB must not count as a
 * hundred pages and be refused for the context's size; a long file that hides its pages is
 * under-counted instead.
 */
export const PDF_GUESSED_PAGES_MAX = 10;

/**
 * Bytes a PDF's object streams may inflate to, in all, to find the page objects compressed in
 * them: they hold small objects only (a stream cannot be inside one), and a hostile file must not
 * inflate without end.
 */
const OBJECT_STREAMS_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Object streams inflated at most: each inflate costs about half a millisecond however little it
 * holds. Writers pack 100 to 255 objects into each, so this covers files of thousands of pages;
 * past it the pages found so far are counted.
 */
const OBJECT_STREAMS_MAX = 100;

/**
 * A PDF's pages: the page objects seen, in the file or in its object streams, else a linearized
 * file's page count, else a guess from its `size` in bytes (`bytes` null: its data could not be
 * decoded); at least one.
 */
export function pdfPages(bytes: Uint8Array | null, size: number): number {
  let pages = bytes === null
    ? 0
    : pageObjects(bytes) + objectStreamPages(bytes) || linearizedPages(bytes);
  if (pages === 0) {
    pages = Math.min(PDF_GUESSED_PAGES_MAX, Math.ceil(size / PDF_BYTES_PER_PAGE));
  }
  return Math.max(1, pages);
}

/**
 * The page objects inside a PDF's object streams (`/Type /ObjStm`, PDF 1.5 and later: pdfTeX,
 * qpdf and many others compress all small objects into them): the first
 * {@linkcode OBJECT_STREAMS_MAX} inflated, up to {@linkcode OBJECT_STREAMS_MAX_BYTES} in all. A
 * stream that is not Flate, or is damaged, counts nothing.
 */
export function objectStreamPages(bytes: Uint8Array): number {
  let pages = 0;
  let budget = OBJECT_STREAMS_MAX_BYTES;
  let left = OBJECT_STREAMS_MAX;
  for (let at = indexOfAscii(bytes, "/ObjStm", 0); at >= 0 && budget > 0 && left-- > 0;) {
    const keyword = indexOfAscii(bytes, "stream", at + 7);
    if (keyword < 0) break;
    let start = keyword + 6;
    if (bytes[start] === 13) start++;
    if (bytes[start] === 10) start++;
    const end = indexOfAscii(bytes, "endstream", start);
    if (end < 0) break;
    try {
      const inflated = inflateSync(bytes.subarray(start, end), { maxOutputLength: budget });
      budget -= inflated.length;
      pages += pageObjects(inflated);
    } catch {
      // Not Flate, damaged, or past what may be inflated: its pages stay unseen.
    }
    at = indexOfAscii(bytes, "/ObjStm", end);
  }
  return pages;
}

/** Where the ASCII text `ascii` first is in `bytes` from `from`, or -1. */
function indexOfAscii(bytes: Uint8Array, ascii: string, from: number): number {
  const first = ascii.charCodeAt(0);
  for (let i = bytes.indexOf(first, from); i >= 0; i = bytes.indexOf(first, i + 1)) {
    let k = 1;
    while (k < ascii.length && bytes[i + k] === ascii.charCodeAt(k)) k++;
    if (k === ascii.length) return i;
  }
  return -1;
}

/** PDF whitespace: NUL, tab, line feed, form feed, carriage return, space. */
function isPdfSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9 || c === 12 || c === 0;
}

/** Whether a byte ends a PDF name: whitespace or a delimiter, `()<>[]{}/%`. */
function endsName(c: number | undefined): boolean {
  return c === undefined || isPdfSpace(c) || c === 0x2f || c === 0x28 || c === 0x29 ||
    c === 0x3c || c === 0x3e || c === 0x5b || c === 0x5d || c === 0x7b || c === 0x7d ||
    c === 0x25;
}

/** Horspool's shifts for "/Type", by the byte under its last letter: 5 for bytes not in it. */
const TYPE_SHIFTS = (() => {
  const shifts = new Uint8Array(256).fill(5);
  for (const [i, c] of [..."/Typ"].entries()) shifts[c.charCodeAt(0)] = 4 - i;
  return shifts;
})();

/**
 * The page objects of a PDF seen in its bytes: `/Type /Page` (any whitespace between, or none),
 * not `/Pages`. A Horspool search for `/Type` skips most bytes, and none is read more than a few
 * times whatever the content: 20 MB of a scanned PDF take 14 ms here, 18 MB of whitespace after a
 * `/Type` (the worst found) 33 ms. No regular expression runs over the data.
 */
export function pageObjects(bytes: Uint8Array): number {
  let pages = 0;
  const end = bytes.length - 5; // "/Page" after the name, so at least 5 bytes more
  for (let i = 4; i < end;) {
    const last = bytes[i];
    if (
      last !== 0x65 || bytes[i - 1] !== 0x70 || bytes[i - 2] !== 0x79 ||
      bytes[i - 3] !== 0x54 || bytes[i - 4] !== 0x2f
    ) {
      i += TYPE_SHIFTS[last]; // not "/Type" ending here
      continue;
    }
    let j = i + 1;
    while (j < bytes.length && isPdfSpace(bytes[j])) j++;
    if (
      bytes[j] === 0x2f && bytes[j + 1] === 0x50 && bytes[j + 2] === 0x61 &&
      bytes[j + 3] === 0x67 && bytes[j + 4] === 0x65 && endsName(bytes[j + 5])
    ) pages++; // "/Page"
    i = j + 4; // a "/Type" may start where the "/Page" was looked for
  }
  return pages;
}

/**
 * The page count (`/N`) of a linearized PDF's first object, which is never compressed, or 0. Read
 * from the first kilobyte only.
 */
function linearizedPages(bytes: Uint8Array): number {
  const start = String.fromCharCode(...bytes.subarray(0, 1024));
  const match = /\/Linearized[^>]{0,512}?\/N[\0\t\n\f\r ]*(\d{1,7})/.exec(start);
  return match ? Number(match[1]) : 0;
}
