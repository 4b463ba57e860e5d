/** @module Tests of a PDF's page count: page objects, object streams, a linearized file's /N, the guess. */
import assert from "node:assert/strict";
import { partTokens, PDF_PAGE_TOKENS } from "../lib/attachment_tokens.ts";
import {
  objectStreamPages,
  pageObjects,
  PDF_BYTES_PER_PAGE,
  PDF_GUESSED_PAGES_MAX,
  pdfPages,
} from "../lib/pdf_pages.ts";
import { deflateSync } from "node:zlib";
import { buildPdf } from "./pdf_fixture.ts";
import { base64, file } from "./parts_fixture.ts";
import { random } from "./random.ts";

const encoder = new TextEncoder();

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

Deno.test("pdfPages: pages seen, else a guess from the size up to a cap, at least one", () => {
  assert.equal(pdfPages(buildPdf({ pages: 7 }).bytes, 1), 7);
  // Data that could not be decoded, or bytes without a page: a page per 64 KiB, at most 10.
  assert.equal(pdfPages(null, 3 * PDF_BYTES_PER_PAGE), 3);
  assert.equal(pdfPages(encoder.encode("%PDF-1.7"), 3 * PDF_BYTES_PER_PAGE + 1), 4);
  assert.equal(pdfPages(null, 1_000 * PDF_BYTES_PER_PAGE), PDF_GUESSED_PAGES_MAX);
  assert.equal(pdfPages(null, 0), 1);
});
