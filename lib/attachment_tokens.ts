/**
 * @module Token estimates of a message's non-text parts (images, files, audio) from what their
 * inline data holds: a PDF's pages (counted in `pdf_pages.ts`), a recording's length, a file's
 * size. Never tokenized.
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

import { pdfPages } from "./pdf_pages.ts";

/**
 * Tokens per page of a PDF. Providers put each page into the context twice: its extracted text
 * and an image of the page (Anthropic: 1,500 to 3,000 tokens of text a page, plus the image;
 * OpenAI extracts "both the text and an image of each page"). Measured on Claude, a page of text
 * costs about 2,100 to 2,500 tokens and a scanned page about 1,600; Gemini bills a page as one
 * image (about 560). Pasted as text, the same page is about 500 to 700 tokens.
 */
export const PDF_PAGE_TOKENS = 2000;

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

/** A PDF's estimate: its pages (see {@linkcode pdfPages}) at {@linkcode PDF_PAGE_TOKENS} each. */
function pdfTokens(base64: string): number {
  return pdfPages(decodeAll(base64), decodedSize(base64)) * PDF_PAGE_TOKENS;
}
