import assert from "node:assert/strict";
import {
  AUDIO_TOKENS_PER_SECOND,
  FILE_PART_TOKENS,
  IMAGE_LOW_DETAIL_TOKENS,
  IMAGE_PART_TOKENS,
  MIN_ATTACHMENT_TOKENS,
  objectStreamPages,
  pageObjects,
  partTokens,
  PDF_BYTES_PER_PAGE,
  PDF_GUESSED_PAGES_MAX,
  PDF_PAGE_TOKENS,
  VIDEO_TOKENS_PER_SECOND,
} from "../lib/attachment_tokens.ts";
import { deflateSync } from "node:zlib";
import { buildPdf } from "./pdf_fixture.ts";
import { random } from "./random.ts";

const encoder = new TextEncoder();

function file(file_data: string, filename?: string) {
  return { type: "file", file: { ...(filename ? { filename } : {}), file_data } };
}

function base64(bytes: Uint8Array | string): string {
  return (typeof bytes === "string" ? encoder.encode(bytes) : bytes).toBase64();
}

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

Deno.test("partTokens: a PDF counts its page objects at PDF_PAGE_TOKENS each, /Pages not", () => {
  for (const pages of [1, 7, 40]) {
    const pdf = buildPdf({ pages });
    assert.equal(partTokens(file(pdf.dataUrl, "report.pdf")), pages * PDF_PAGE_TOKENS, `${pages}`);
  }
  // Whatever the whitespace between the two names, or none; `/Pages` and `/PageLabels` are not
  // pages.
  for (const pageType of ["/Type/Page", "/Type\r\n  /Page", "/Type\t/Page/Rotate 0"]) {
    const pdf = buildPdf({ pages: 3, pageType });
    assert.equal(partTokens(file(pdf.dataUrl)), 3 * PDF_PAGE_TOKENS, JSON.stringify(pageType));
  }
  const labels = `%PDF-1.4\n<< /Type /Pages /Count 2 >> << /Type /PageLabels >>\n` +
    `<< /Type /Page >> << /Type /Page>> << /Type /Pagex >>`;
  assert.equal(partTokens(file(`data:application/pdf;base64,${base64(labels)}`)), 2 * 2000);
});

Deno.test("partTokens: a PDF's size is not its cost, its pages are", () => {
  // The same 12 pages, text only or with a 200 KB scan on each: the same estimate.
  const text = buildPdf({ pages: 12 });
  const scanned = buildPdf({ pages: 12, imageBytes: 200_000 });
  assert.ok(scanned.bytes.length > 20 * text.bytes.length);
  assert.equal(partTokens(file(text.dataUrl)), 12 * PDF_PAGE_TOKENS);
  assert.equal(partTokens(file(scanned.dataUrl)), 12 * PDF_PAGE_TOKENS);
});

Deno.test("partTokens: a PDF whose pages cannot be seen is guessed from its size, up to a cap", () => {
  // An object stream that cannot be inflated: nothing to count, so a page per 64 KiB.
  const small = new Uint8Array(400_000);
  small.set(encoder.encode("%PDF-1.7\n<< /Type /ObjStm /N 40 /Filter /FlateDecode >>\nstream\n"));
  assert.equal(Math.ceil(small.length / PDF_BYTES_PER_PAGE), 7);
  assert.equal(partTokens(file(`data:application/pdf;base64,${base64(small)}`)), 7 * 2000);
  // A large one (a single scanned page, say) is not counted as a hundred pages.
  const compressed = new Uint8Array(6_000_000);
  compressed.set(small.subarray(0, 80));
  assert.equal(
    partTokens(file(`data:application/pdf;base64,${base64(compressed)}`)),
    PDF_GUESSED_PAGES_MAX * PDF_PAGE_TOKENS,
  );
  // A linearized file says its page count in its first object, which is never compressed.
  const linearized = compressed.slice();
  linearized.set(encoder.encode(
    "%PDF-1.7\n1 0 obj\n<< /Linearized 1 /L 1000000 /H [ 600 200 ] /O 9 /E 5000 /N 3 /T 99 >>",
  ));
  assert.equal(partTokens(file(`data:application/pdf;base64,${base64(linearized)}`)), 3 * 2000);
  // Data that is not base64 at all: its length says its size.
  const broken = `data:application/pdf;base64,${"*".repeat(400_000)}`;
  assert.equal(partTokens(file(broken)), 5 * PDF_PAGE_TOKENS);
  // At least one page.
  assert.equal(partTokens(file(`data:application/pdf;base64,${base64("%PDF-1.7")}`)), 2000);
});

/** Bytes as a scan's compressed image holds them: anything, "/Type" and "/ObjStm" as likely as not. */
function randomBytes(n: number): Uint8Array {
  const next = random(n);
  return Uint8Array.from({ length: n }, () => Math.floor(next() * 256));
}

/** A PDF 1.5 whose page objects are all compressed into one object stream, as pdfTeX and qpdf write. */
function objectStreamPdf(pages: number, scanBytes: number): Uint8Array {
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    `<< /Type /Pages /Count ${pages} >>`,
    ...Array.from(
      { length: pages },
      () => "<< /Type/Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    ),
  ].join("\n");
  const packed = deflateSync(encoder.encode(objects));
  const parts = [
    encoder.encode(
      `%PDF-1.5\n1 0 obj\n<< /Type /ObjStm /N ${pages + 2} /First 20 ` +
        `/Filter /FlateDecode /Length ${packed.length} >>\nstream\r\n`,
    ),
    packed,
    encoder.encode("\nendstream\nendobj\n9 0 obj\n<< /Type /XObject /Subtype /Image >>\nstream\n"),
    randomBytes(scanBytes),
    encoder.encode("\nendstream\nendobj\n%%EOF\n"),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("partTokens: a PDF's pages compressed in object streams are counted, not guessed", () => {
  // A one-page scan of 3 MB: one page, where a guess from its size would make 46.
  const scan = objectStreamPdf(1, 3_000_000);
  assert.equal(pageObjects(scan), 0);
  assert.equal(objectStreamPages(scan), 1);
  assert.equal(partTokens(file(`data:application/pdf;base64,${base64(scan)}`)), PDF_PAGE_TOKENS);
  const report = objectStreamPdf(40, 10_000);
  assert.equal(partTokens(file(`data:application/pdf;base64,${base64(report)}`)), 40 * 2000);
  // An object stream that inflates without end is read no further than a bound.
  const bomb = deflateSync(new Uint8Array(64 * 1024 * 1024));
  const hostile = new Uint8Array(100 + bomb.length);
  hostile.set(encoder.encode("%PDF-1.5\n<< /Type /ObjStm >>\nstream\n"));
  hostile.set(bomb, 40);
  assert.equal(objectStreamPages(hostile), 0);
});

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

Deno.test("partTokens stays linear on hostile PDF data", () => {
  // A name followed by megabytes of whitespace, then a page; and a megabyte of slashes.
  const spaces = `%PDF-1.7 /Type${" ".repeat(3_000_000)}/Page /Type /Page`;
  assert.equal(partTokens(file(`data:application/pdf;base64,${base64(spaces)}`)), 2 * 2000);
  const slashes = `%PDF-1.7 ${"/Type/".repeat(500_000)}`;
  const guess = Math.min(
    PDF_GUESSED_PAGES_MAX,
    Math.ceil(encoder.encode(slashes).length / PDF_BYTES_PER_PAGE),
  ) * 2000;
  assert.equal(partTokens(file(`data:application/pdf;base64,${base64(slashes)}`)), guess);
  // Empty object streams by the hundred thousand: a bounded number is inflated.
  const streams = `%PDF-1.5\n${"/ObjStm\nstream\nendstream\n".repeat(200_000)}`;
  assert.equal(objectStreamPages(encoder.encode(streams)), 0);
});

Deno.test("pageObjects finds what a plain scan finds, at the edges and in random mixes", () => {
  const count = (text: string) => pageObjects(encoder.encode(text));
  assert.equal(count("/Type/Page"), 1, "the whole file");
  assert.equal(count("/Typ/Type/Page //Type /Page /Type\0/Page>>"), 3);
  assert.equal(count("/Type/Pages /Type/Pagex /Type /Page#20 /type /page /Type/ Page"), 0);
  // Against a regular expression, on mixes of the pieces that could confuse a skipping search.
  const pieces = ["/Type", "/Page", "/Pages", "/", "Type", "Typ", "e", "p", " ", "\n", "x", ">>"];
  const reference = /\/Type[\0\t\n\f\r ]*\/Page(?![^\0\t\n\f\r ()<>[\]{}\/%])/g;
  const next = random(42);
  for (let round = 0; round < 2000; round++) {
    let text = "";
    const length = Math.floor(next() * 30);
    for (let i = 0; i < length; i++) text += pieces[Math.floor(next() * pieces.length)];
    assert.equal(count(text), text.match(reference)?.length ?? 0, JSON.stringify(text));
  }
});
