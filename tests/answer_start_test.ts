/** @module Tests of how Poe's 2xx answer's start is read, and the errors a broken start ends in. */
import assert from "node:assert/strict";
import { answerForm, startFailure, webPageError } from "../lib/answer_start.ts";
import { TimeoutError } from "../lib/upstream_timeouts.ts";

/** An answer with `type` as its content type, none when null (bytes get none of their own). */
function answer(status: number, type: string | null, body: string | null = "x"): Response {
  const headers = type === null ? undefined : { "content-type": type };
  return new Response(body === null ? null : new TextEncoder().encode(body), { status, headers });
}

Deno.test("answerForm: each kind of answer by its status, content type and the request", async () => {
  const cases: [Response, boolean, string][] = [
    [answer(500, "text/html"), true, "refused"],
    [answer(400, "application/json"), false, "refused"],
    [answer(200, "text/html; charset=utf-8"), true, "page"],
    [answer(200, "text/html"), false, "page"],
    [answer(200, "application/json"), false, "whole"],
    [answer(200, null), false, "whole"],
    [answer(200, "text/event-stream"), true, "events"],
    [answer(200, "application/json; charset=utf-8"), true, "json"],
    [answer(200, "text/plain"), true, "as-is"],
    [answer(200, null), true, "as-is"],
    [answer(200, "text/event-stream", null), true, "as-is"],
  ];
  assert.equal(answer(200, null).headers.get("content-type"), null);
  for (const [response, stream, form] of cases) {
    const type = response.headers.get("content-type");
    assert.equal(answerForm(response, stream), form, `${response.status} ${type} ${stream}`);
    await response.body?.cancel();
  }
});

Deno.test("webPageError: a 502 upstream_bad_body that names the web page", () => {
  const err = webPageError();
  assert.equal(err.status, 502);
  assert.equal(err.code, "upstream_bad_body");
  assert.match(err.message, /web page/);
});

Deno.test("startFailure: a broken JSON answer or a held stream is final; a quick break is retried", () => {
  const broken = new Error("connection reset");
  const json = startFailure(broken, { events: false, ms: 10, quickMs: 1000 });
  assert.equal(json.retry, false);
  assert.equal(json.error.code, "upstream_disconnected");
  assert.match(json.error.message, /before the answer was complete/);
  assert.equal(json.error.cause, broken);
  const held = startFailure(broken, { events: true, ms: 5000, quickMs: 1000 });
  assert.equal(held.retry, false);
  assert.match(held.error.message, /while it was answering \(after 5\.0 s/);
  const quick = startFailure(broken, { events: true, ms: 10, quickMs: 1000 });
  assert.equal(quick.retry, true);
  assert.match(quick.error.message, /before the answer began/);
  // A timeout is never a held break, however late.
  const late = startFailure(new TimeoutError("idle"), { events: true, ms: 9000, quickMs: 1000 });
  assert.equal(late.retry, true);
});
