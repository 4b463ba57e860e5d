/**
 * @module Token estimates of a message's non-text parts (images, files, audio) from what their
 * inline data holds: a PDF's pages, a recording's length, a file's size. Never tokenized.
 */

/** Fixed estimate for an `image_url` part: OpenAI's figure for a 1024x1024 high-detail image. */
export const IMAGE_PART_TOKENS = 765;

/** Fixed estimate for an `image_url` part with `detail: "low"` (OpenAI's flat low-detail cost). */
export const IMAGE_LOW_DETAIL_TOKENS = 85;

/**
 * Fixed estimate for a part whose data is not in the request (a `file` part with a `file_id`
 * only) or cannot be read, and for any other non-text part type: nothing tells its size.
 */
export const FILE_PART_TOKENS = 1000;

import { inflateSync } from "node:zlib";

/**
 * Tokens per page of a PDF. Providers put each page into the context twice: its extracted text
 * and an image of the page (Anthropic: 1,500 to 3,000 tokens of text a page, plus the image;
 * OpenAI extracts "both the text and an image of each page"). Measured on Claude, a page of text
 * costs about 2,100 to 2,500 tokens and a scanned page about 1,600; Gemini bills a page as one
 * image (about 560). Pasted as text, the same page is about 500 to 700 tokens.
 */
export const PDF_PAGE_TOKENS = 2000;

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

/** OpenAI: "Audio tokens in user messages are 1 token per 100 ms of audio" (Gemini's: 32). */
export const AUDIO_TOKENS_PER_SECOND = 10;

/** Gemini's figure for video: 263 tokens a second (a frame a second, and its sound). */
export const VIDEO_TOKENS_PER_SECOND = 263;

/**
 * Bytes a second of a recording by its format, to tell its length from its size. Low rates, so
 * the length is rather over- than under-estimated: a `wav` without a readable header (whose byte
 * rate is used when there is one) and FLAC as 16 kHz 16-bit mono, `pcm16` as OpenAI's 24 kHz mono;
 * any other (mp3, ogg, opus, aac, m4a, webm) as speech at 64 kbit/s
 * ({@linkcode LOSSY_AUDIO_BYTES_PER_SECOND}).
 */
const AUDIO_BYTES_PER_SECOND: Record<string, number> = {
  wav: 32_000,
  flac: 32_000,
  pcm16: 48_000,
};

/** Bytes a second of a compressed recording whose format has no entry above: 64 kbit/s. */
const LOSSY_AUDIO_BYTES_PER_SECOND = 8_000;

/** Bytes a second of a video (1 Mbit/s: a phone's own recordings take 10 times that). */
const VIDEO_BYTES_PER_SECOND = 125_000;

/** A text file: a token per four bytes, as text is guessed in `token_bounds.ts`. */
const TEXT_BYTES_PER_TOKEN = 4;

/** The least an inline file (but a PDF: one page) or recording is estimated at. */
export const MIN_ATTACHMENT_TOKENS = 100;

/**
 * Estimates already made, by part object. The counters read a message several times a request
 * (the hash of its cache key, the byte bound, the count, the cost cap), and a PDF's data is
 * decoded and read in full: once a part, as the parsed body's part objects stay the same.
 */
const estimates = new WeakMap<object, number>();

/**
 * The estimated tokens of one non-text content part (any `type` but `text` and `refusal`):
 * an image at OpenAI's flat figures; a `file` part with inline data by its kind (a PDF by its
 * pages, an image as an image, audio and video by their length, anything else as text by its
 * size); an `input_audio` part by its length; anything else, or a file without data, flat.
 */
export function partTokens(part: Record<string, unknown>): number {
  if (part.type === "image_url") {
    const image = part.image_url as { detail?: unknown } | undefined;
    return image?.detail === "low" ? IMAGE_LOW_DETAIL_TOKENS : IMAGE_PART_TOKENS;
  }
  let tokens = estimates.get(part);
  if (tokens === undefined) {
    if (part.type === "file") tokens = fileTokens(part.file);
    else if (part.type === "input_audio") tokens = inputAudioTokens(part.input_audio);
    else tokens = FILE_PART_TOKENS;
    estimates.set(part, tokens);
  }
  return tokens;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object";
}

/** Inline data: its media type (lowercase, "" when not given) and its base64 text. */
interface Inline {
  mime: string;
  base64: string;
}

/**
 * A data URL's media type and base64 data, or plain base64 as it is (`file_data` and
 * `input_audio.data` may be either). A data URL not in base64 (percent-encoded text) is null.
 */
function inlineData(value: string): Inline | null {
  if (!value.startsWith("data:")) return { mime: "", base64: value };
  // A data URL's header is short; a comma far in is not one.
  const comma = value.lastIndexOf(",", 256);
  if (comma < 0) return null;
  const header = value.slice(5, comma).toLowerCase();
  if (!header.endsWith(";base64")) return null;
  return { mime: header.split(";")[0].trim(), base64: value.slice(comma + 1) };
}

/** The bytes that `base64` decodes to, from its length (padding and a final newline off). */
function decodedSize(base64: string): number {
  let end = base64.length;
  for (let i = 0; i < 4 && end > 0; i++) {
    const c = base64.charCodeAt(end - 1);
    if (c !== 61 && c !== 10 && c !== 13) break; // "=", "\n", "\r"
    end--;
  }
  return Math.floor(end * 3 / 4);
}

/** Whether base64 text uses the URL-safe alphabet (`-` and `_`), judged from its start. */
function urlSafe(base64: string): boolean {
  return /[-_]/.test(base64.slice(0, 1024));
}

/** The first bytes of base64 data (up to 48), for magic numbers and headers; empty if invalid. */
function head(base64: string): Uint8Array {
  try {
    return Uint8Array.fromBase64(base64.slice(0, 64), {
      alphabet: urlSafe(base64) ? "base64url" : "base64",
      lastChunkHandling: "stop-before-partial",
    });
  } catch {
    return new Uint8Array(0);
  }
}

/** All of base64 data, decoded once, or null when it is not valid base64. */
function decodeAll(base64: string): Uint8Array | null {
  try {
    return Uint8Array.fromBase64(base64, { alphabet: urlSafe(base64) ? "base64url" : "base64" });
  } catch {
    return null;
  }
}

function startsWith(bytes: Uint8Array, ascii: string, at = 0): boolean {
  if (bytes.length < at + ascii.length) return false;
  for (let i = 0; i < ascii.length; i++) {
    if (bytes[at + i] !== ascii.charCodeAt(i)) return false;
  }
  return true;
}

/** File name extensions of the kinds estimated apart from text. */
const EXTENSION_KINDS: Record<string, string> = {
  pdf: "application/pdf",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  heic: "image/heic",
  wav: "audio/wav",
  mp3: "audio/mpeg",
  m4a: "audio/mp4",
  aac: "audio/aac",
  ogg: "audio/ogg",
  opus: "audio/opus",
  flac: "audio/flac",
  mp4: "video/mp4",
  mov: "video/quicktime",
  webm: "video/webm",
  mkv: "video/x-matroska",
  avi: "video/x-msvideo",
};

/** A `file` part's estimate, from its `file_data`; flat without it (a `file_id`). */
function fileTokens(file: unknown): number {
  if (!isRecord(file) || typeof file.file_data !== "string") return FILE_PART_TOKENS;
  const data = inlineData(file.file_data);
  // Percent-encoded text: about a byte a character.
  if (data === null) return textTokens(file.file_data.length);
  const start = head(data.base64);
  let mime = data.mime;
  if (mime === "" || mime === "application/octet-stream") {
    const name = typeof file.filename === "string" ? file.filename.toLowerCase() : "";
    const dot = name.lastIndexOf(".");
    mime = (dot >= 0 ? EXTENSION_KINDS[name.slice(dot + 1)] : undefined) ?? mime;
  }
  const size = decodedSize(data.base64);
  // The bytes say it best, whatever the type or name claims.
  if (startsWith(start, "%PDF-") || mime === "application/pdf") return pdfTokens(data.base64);
  if (mime.startsWith("image/")) return IMAGE_PART_TOKENS;
  if (mime.startsWith("audio/")) return audioTokens(size, mime.slice(6), start);
  if (mime.startsWith("video/")) {
    const seconds = size / VIDEO_BYTES_PER_SECOND;
    return Math.max(MIN_ATTACHMENT_TOKENS, Math.ceil(seconds * VIDEO_TOKENS_PER_SECOND));
  }
  // A binary file (an Office file or other ZIP, a TIFF scan) is not its bytes as text: what a
  // provider reads of it does not follow from its size, so it keeps the flat figure.
  if (
    TEXT_TYPE.test(mime) || (!mime.includes("/") || mime === "application/octet-stream") &&
      !startsWith(start, "PK\x03\x04") && !binaryBytes(start)
  ) {
    return textTokens(size);
  }
  return FILE_PART_TOKENS;
}

/** Media types of text files, counted by their size. */
const TEXT_TYPE =
  /^(text\/|application\/(json|ld\+json|xml|x-yaml|yaml|javascript|x-javascript|typescript|sql|x-sh|x-python|rtf|x-tex|csv|markdown|x-ndjson))/;

/** Whether a file's first bytes hold control characters that text does not (NUL and the like). */
function binaryBytes(bytes: Uint8Array): boolean {
  for (const c of bytes) {
    if (c < 9 || (c > 13 && c < 32 && c !== 27)) return true;
  }
  return false;
}

function textTokens(bytes: number): number {
  return Math.max(MIN_ATTACHMENT_TOKENS, Math.ceil(bytes / TEXT_BYTES_PER_TOKEN));
}

/** An `input_audio` part's estimate, from its `data` and `format`; flat without data. */
function inputAudioTokens(audio: unknown): number {
  if (!isRecord(audio) || typeof audio.data !== "string") return FILE_PART_TOKENS;
  const data = inlineData(audio.data);
  if (data === null) return FILE_PART_TOKENS;
  const format = typeof audio.format === "string"
    ? audio.format.toLowerCase()
    : data.mime.replace(/^audio\//, "");
  return audioTokens(decodedSize(data.base64), format, head(data.base64));
}

/** Media subtypes and format names of the same audio formats. */
const AUDIO_FORMATS: Record<string, string> = {
  "x-wav": "wav",
  wave: "wav",
  "vnd.wave": "wav",
  "x-flac": "flac",
  pcm: "pcm16",
  l16: "pcm16",
};

/** A recording's estimate from its length: its size over its format's (or header's) byte rate. */
function audioTokens(size: number, format: string, start: Uint8Array): number {
  const name = AUDIO_FORMATS[format] ?? format;
  const rate = wavByteRate(start) ?? AUDIO_BYTES_PER_SECOND[name] ?? LOSSY_AUDIO_BYTES_PER_SECOND;
  return Math.max(MIN_ATTACHMENT_TOKENS, Math.ceil(size / rate * AUDIO_TOKENS_PER_SECOND));
}

/** The byte rate in a canonical WAV header (`RIFF`, `WAVE`, then `fmt `), else null. */
function wavByteRate(bytes: Uint8Array): number | null {
  if (!startsWith(bytes, "RIFF") || !startsWith(bytes, "WAVE", 8)) return null;
  if (!startsWith(bytes, "fmt ", 12) || bytes.length < 32) return null;
  const rate = new DataView(bytes.buffer, bytes.byteOffset).getUint32(28, true);
  // Telephone audio, 8 kHz of 8 bits, is the lowest in use; a lower figure is a broken header.
  return rate >= 8000 ? rate : null;
}

/**
 * A PDF's estimate: its pages (page objects seen, in the file or in its object streams, else a
 * linearized file's page count, else a guess from its size) at {@linkcode PDF_PAGE_TOKENS} each,
 * at least one.
 */
function pdfTokens(base64: string): number {
  const bytes = decodeAll(base64);
  let pages = bytes === null
    ? 0
    : pageObjects(bytes) + objectStreamPages(bytes) || linearizedPages(bytes);
  if (pages === 0) {
    pages = Math.min(PDF_GUESSED_PAGES_MAX, Math.ceil(decodedSize(base64) / PDF_BYTES_PER_PAGE));
  }
  return Math.max(1, pages) * PDF_PAGE_TOKENS;
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
    if (startsWith(bytes, ascii, i)) return i;
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
