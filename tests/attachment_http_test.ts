/** @module Attachments over HTTP: a PDF's pages count against the cost cap and the context cap. */
import assert from "node:assert/strict";
import { FakePoe } from "./fake_poe.ts";
import { startProxy } from "./harness.ts";
import { ModelRegistry } from "../lib/models.ts";
import type { ChatMessage } from "../lib/openai_types.ts";
import { PDF_PAGE_TOKENS } from "../lib/attachment_tokens.ts";
import { DEFAULT_ANSWER_RESERVE } from "../lib/clip.ts";
import { buildPdf } from "./pdf_fixture.ts";

async function chat(url: string, body: unknown): Promise<Response> {
  return await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

function pdfPart(dataUrl: string) {
  return { type: "file", file: { filename: "report.pdf", file_data: dataUrl } };
}

Deno.test("cost cap: a large PDF is refused like its text, a one-page one goes through", async () => {
  await using fake = await FakePoe.start();
  // Claude-Sonnet-4.6 in the tests' registry: 226 points a message and 60 per 1,000 tokens, so
  // 500 points leave about 4,500 input tokens.
  await using proxy = await startProxy({
    poeUrl: fake.url,
    env: { FOOTER: "off", MAX_POINTS_PER_MESSAGE: "500" },
  });
  // 40 pages of text and a 100 KB scan each: 4 MB, 80,000 tokens.
  const pdf = buildPdf({ pages: 40, imageBytes: 100_000 });
  assert.ok(pdf.bytes.length > 4_000_000);
  const asks = {
    text: [{ type: "text", text: `Summarise this report:\n\n${pdf.text}` }],
    pdf: [{ type: "text", text: "Summarise this report." }, pdfPart(pdf.dataUrl)],
  };
  for (const [name, content] of Object.entries(asks)) {
    const res = await chat(proxy.url, {
      model: "Claude-Sonnet-4.6",
      messages: [{ role: "user", content }],
    });
    assert.equal(res.status, 200, name);
    assert.equal(res.headers.get("x-poe-proxy-guard"), "cost-cap", name);
    const text = (await res.json()).choices[0].message.content;
    assert.match(text, /MAX_POINTS_PER_MESSAGE of 500 points/, name);
    if (name === "pdf") {
      // 226 + 60 per 1,000 of 80,000 tokens and a few: about 5,000 points.
      const points = Number(/would cost about ([\d,]+) points/.exec(text)?.[1].replace(/,/g, ""));
      assert.ok(points > 226 + 60 * 40 * PDF_PAGE_TOKENS / 1000, text);
    }
  }
  assert.equal(fake.chatRequests().length, 0, "Poe was not called");
  // One page is about 2,000 tokens: under the cap.
  const page = buildPdf({ pages: 1 });
  const res = await chat(proxy.url, {
    model: "Claude-Sonnet-4.6",
    messages: [{ role: "user", content: [{ type: "text", text: "Read." }, pdfPart(page.dataUrl)] }],
  });
  await res.body?.cancel();
  assert.equal(res.headers.get("x-poe-proxy-guard"), null);
  assert.equal(fake.chatRequests().length, 1);
});

Deno.test("clipping: a history resending a large PDF each turn is clipped to the model's cap", async () => {
  // 20,000 tokens for the history, and the room a request without max_tokens leaves the answer.
  const cap = 20_000 + DEFAULT_ANSWER_RESERVE;
  const registry = ModelRegistry.parse(
    `defaults:\n  text_max_tokens: ${cap}\nmodels:\n  text:\n    - poe_name: Claude-Sonnet-4.6\n`,
    "inline.yaml",
  );
  await using fake = await FakePoe.start();
  await using proxy = await startProxy({ poeUrl: fake.url, registry, env: { FOOTER: "off" } });
  // 8 pages with a 100 KB scan each (16,000 tokens); and 456,000 bytes with no page object to
  // see (as when they are in compressed object streams): 7 pages at a page per 64 KiB.
  const scanned = buildPdf({ pages: 8, imageBytes: 100_000 }).dataUrl;
  const opaque = `data:application/pdf;base64,${btoa("%PDF-1.7 page text ".repeat(24_000))}`;
  for (const [name, pdf] of Object.entries({ scanned, opaque })) {
    const messages: ChatMessage[] = [];
    for (let i = 0; i < 10; i++) {
      messages.push({
        role: "user",
        content: [{ type: "text", text: `question ${i}` }, pdfPart(pdf)],
      });
      messages.push({ role: "assistant", content: `answer ${i}` });
    }
    messages.push({ role: "user", content: "and now?" });
    const res = await chat(proxy.url, { model: "Claude-Sonnet-4.6", messages });
    assert.equal(res.status, 200, name);
    await res.body?.cancel();
    const header = res.headers.get("x-poe-proxy-clipped") ?? "";
    const match = /^dropped=(\d+) tokens=(\d+)->(\d+)$/.exec(header);
    assert.ok(match, `${name}: ${header}`);
    assert.ok(Number(match[2]) > 10 * 7 * PDF_PAGE_TOKENS, `${name}: ${header}`);
    assert.ok(Number(match[3]) <= 20_000, `${name}: ${header}`);
    // Kept: the newest turn with the PDF, its answer and the question; the PDF sent whole.
    const sent = (fake.chatRequests().at(-1)!.body as { messages: ChatMessage[] }).messages;
    assert.deepEqual(sent, messages.slice(-3), name);
    assert.equal(Number(match[1]), messages.length - 3, name);
  }
});
