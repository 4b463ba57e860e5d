/** @module Test PDFs built in memory: page objects a reader can see, the text on them, any size. */
import { random } from "./random.ts";

/** Options of {@linkcode buildPdf}. */
export interface PdfOptions {
  /** Pages of the document. */
  pages: number;
  /** The text on each page. Default: a short paragraph naming the page. */
  text?: (page: number) => string;
  /**
   * Bytes of a (random, so incompressible) image stream on each page, as a scan or a figure
   * carries. Default: 0.
   */
  imageBytes?: number;
  /** How `/Type /Page` is written (real files vary). Default: `"/Type /Page"`. */
  pageType?: string;
}

/** A PDF, and the text its pages hold. */
export interface TestPdf {
  bytes: Uint8Array;
  text: string;
  /** `data:application/pdf;base64,...`, as `file.file_data` carries it. */
  dataUrl: string;
}

const encoder = new TextEncoder();

/** A small but well-formed PDF (no xref table; readers rebuild it) with `pages` page objects. */
export function buildPdf(options: PdfOptions): TestPdf {
  const { pages, imageBytes = 0, pageType = "/Type /Page" } = options;
  const textOf = options.text ??
    ((page: number) =>
      `Page ${page + 1} of the quarterly report. Revenue grew in every region this quarter. `
        .repeat(
          20,
        ));
  const next = random(pages * 7919 + imageBytes);
  const chunks: Uint8Array[] = [encoder.encode("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")];
  const kids = Array.from({ length: pages }, (_, i) => `${3 + 3 * i} 0 R`).join(" ");
  chunks.push(encoder.encode(
    `1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n` +
      `2 0 obj\n<< /Type /Pages /Kids [${kids}] /Count ${pages} >>\nendobj\n`,
  ));
  const texts: string[] = [];
  for (let i = 0; i < pages; i++) {
    const page = 3 + 3 * i;
    const text = textOf(i);
    texts.push(text);
    const content = `BT /F1 11 Tf 72 720 Td (${text}) Tj ET`;
    chunks.push(encoder.encode(
      `${page} 0 obj\n<< ${pageType} /Parent 2 0 R /MediaBox [0 0 612 792] ` +
        `/Contents ${page + 1} 0 R /Resources << /XObject << /Im1 ${page + 2} 0 R >> >> >>\n` +
        `endobj\n${page + 1} 0 obj\n<< /Length ${content.length} >>\nstream\n${content}\n` +
        `endstream\nendobj\n${page + 2} 0 obj\n<< /Type /XObject /Subtype /Image ` +
        `/Length ${imageBytes} >>\nstream\n`,
    ));
    const image = new Uint8Array(imageBytes);
    for (let b = 0; b < imageBytes; b++) image[b] = Math.floor(next() * 256);
    chunks.push(image, encoder.encode("\nendstream\nendobj\n"));
  }
  chunks.push(encoder.encode("trailer\n<< /Root 1 0 R >>\n%%EOF\n"));
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return {
    bytes,
    text: texts.join("\n\n"),
    dataUrl: `data:application/pdf;base64,${bytes.toBase64()}`,
  };
}
