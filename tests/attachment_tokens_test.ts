import assert from "node:assert/strict";
import {
  AUDIO_TOKENS_PER_SECOND,
  FILE_PART_TOKENS,
  IMAGE_LOW_DETAIL_TOKENS,
  IMAGE_PART_TOKENS,
  MIN_ATTACHMENT_TOKENS,
  partTokens,
  PDF_PAGE_TOKENS,
  VIDEO_TOKENS_PER_SECOND,
} from "../lib/attachment_tokens.ts";
import { buildPdf } from "./pdf_fixture.ts";
import { base64, file } from "./parts_fixture.ts";

const encoder = new TextEncoder();

/** A WAV file: a canonical 44-byte header with `byteRate`, then `seconds` of silence. */
function wav(byteRate: number, seconds: number): Uint8Array {
  const bytes = new Uint8Array(44 + byteRate * seconds);
  bytes.set(encoder.encode("RIFF"), 0);
  bytes.set(encoder.encode("WAVEfmt "), 8);
  const view = new DataView(bytes.buffer);
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, byteRate / 2, true); // sample rate, 16-bit
  view.setUint32(28, byteRate, true);
  bytes.set(encoder.encode("data"), 36);
  view.setUint32(40, byteRate * seconds, true);
  return bytes;
}

Deno.test("partTokens: a PDF is known by its media type, its name or its bytes", () => {
  const pdf = buildPdf({ pages: 5 });
  const raw = pdf.bytes.toBase64();
  const expected = 5 * PDF_PAGE_TOKENS;
  assert.equal(partTokens(file(raw, "Report.PDF")), expected, "plain base64 and a name");
  assert.equal(partTokens(file(raw)), expected, "plain base64, by its %PDF- header");
  assert.equal(partTokens(file(`data:application/octet-stream;base64,${raw}`)), expected);
  assert.equal(partTokens(file(pdf.bytes.toBase64({ alphabet: "base64url" }))), expected);
  // Whitespace in the base64 (line-wrapped at 76) is read past.
  const wrapped = raw.replace(/.{76}/g, "$&\n");
  assert.equal(partTokens(file(`data:application/pdf;base64,${wrapped}`)), expected);
});

Deno.test("partTokens: other files by kind, text by size, a file_id flat", () => {
  const text = "name,amount\nalice,12\n".repeat(10_000); // 210,000 bytes
  assert.equal(partTokens(file(`data:text/csv;base64,${base64(text)}`)), 210_000 / 4);
  assert.equal(partTokens(file(base64(text), "data.csv")), 210_000 / 4);
  assert.equal(partTokens(file(`data:text/plain;base64,${base64("hi")}`)), MIN_ATTACHMENT_TOKENS);
  // Percent-encoded, not base64: a byte a character.
  assert.equal(partTokens(file(`data:text/plain,${"a".repeat(4000)}`)), 1004);
  const png = `data:image/png;base64,${base64(new Uint8Array(3_000_000))}`;
  assert.equal(partTokens(file(png)), IMAGE_PART_TOKENS);
  assert.equal(partTokens(file(base64(new Uint8Array(3_000_000)), "photo.JPG")), 765);
  // A minute of video at 1 Mbit/s.
  const video = `data:video/mp4;base64,${base64(new Uint8Array(7_500_000))}`;
  assert.equal(partTokens(file(video)), 60 * VIDEO_TOKENS_PER_SECOND);
  assert.equal(partTokens({ type: "file", file: { file_id: "file-abc" } }), FILE_PART_TOKENS);
  assert.equal(partTokens({ type: "file" }), FILE_PART_TOKENS);
  assert.equal(partTokens({ type: "video_url", video_url: { url: "https://x" } }), 1000);
});

Deno.test("partTokens: binary files that are not text keep the flat figure, whatever their size", () => {
  // An Office file is a ZIP: 2 MB of it is not 500,000 tokens of text.
  const zip = new Uint8Array(2_000_000);
  zip.set([0x50, 0x4b, 0x03, 0x04]);
  const docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
  assert.equal(partTokens(file(`data:${docx};base64,${base64(zip)}`)), FILE_PART_TOKENS);
  assert.equal(partTokens(file(base64(zip), "report.docx")), FILE_PART_TOKENS);
  assert.equal(partTokens(file(`data:application/zip;base64,${base64(zip)}`)), FILE_PART_TOKENS);
  // A TIFF scan with no type, or any file whose first bytes are not text.
  const tiff = new Uint8Array(2_000_000);
  tiff.set([0x49, 0x49, 0x2a, 0x00]);
  assert.equal(partTokens(file(base64(tiff), "scan.tif")), FILE_PART_TOKENS);
  assert.equal(partTokens(file(`data:application/octet-stream;base64,${base64(tiff)}`)), 1000);
  // Text without a type is still counted by its size.
  assert.equal(partTokens(file(base64("hello world ".repeat(1000)))), 3000);
});

Deno.test("partTokens: images stay flat, high or low detail, whatever their size", () => {
  const url = `data:image/png;base64,${"A".repeat(2_000_000)}`;
  assert.equal(partTokens({ type: "image_url", image_url: { url } }), IMAGE_PART_TOKENS);
  assert.equal(
    partTokens({ type: "image_url", image_url: { url, detail: "low" } }),
    IMAGE_LOW_DETAIL_TOKENS,
  );
});

Deno.test("partTokens: audio by its length, about 10 tokens a second", () => {
  const audio = (data: string, format?: string) => ({
    type: "input_audio",
    input_audio: { data, ...(format ? { format } : {}) },
  });
  // A WAV's own header gives its byte rate: a minute at 44.1 kHz or 16 kHz is the same minute.
  for (const rate of [88_200, 32_000]) {
    const minute = wav(rate, 60);
    assert.equal(partTokens(audio(base64(minute), "wav")), 60 * AUDIO_TOKENS_PER_SECOND + 1);
  }
  // mp3 and other compressed formats at 64 kbit/s: 480,000 bytes are a minute.
  const mp3 = base64(new Uint8Array(480_000));
  assert.equal(partTokens(audio(mp3, "mp3")), 600);
  assert.equal(partTokens(audio(`data:audio/mpeg;base64,${mp3}`)), 600);
  assert.equal(partTokens(file(`data:audio/mpeg;base64,${mp3}`)), 600, "as a file part too");
  // A short clip is at least MIN_ATTACHMENT_TOKENS; no data is the flat figure.
  assert.equal(partTokens(audio(base64(new Uint8Array(100)), "mp3")), MIN_ATTACHMENT_TOKENS);
  assert.equal(partTokens({ type: "input_audio", input_audio: { format: "wav" } }), 1000);
});

Deno.test("partTokens reads a part's data once, however often the part is estimated", () => {
  const pdf = buildPdf({ pages: 4 });
  let reads = 0;
  const part = {
    type: "file",
    get file() {
      reads++;
      return { filename: "a.pdf", file_data: pdf.dataUrl };
    },
  };
  for (let i = 0; i < 5; i++) assert.equal(partTokens(part), 4 * PDF_PAGE_TOKENS);
  assert.equal(reads, 1);
  // A copy is another part: read once more.
  assert.equal(partTokens({ type: "file", file: part.file }), 4 * PDF_PAGE_TOKENS);
});
