import assert from "node:assert/strict";
import { headerResponse } from "../lib/header_response.ts";

Deno.test("headerResponse: the status, body and every header, a text body's content-type replaced", async () => {
  const response = headerResponse('{"ok":true}', 201, [
    ["x-request-id", "abc"],
    ["content-type", "application/json"],
    ["x-poe-points", "12"],
  ]);
  assert.deepEqual(response.status, 201);
  assert.deepEqual(await response.text(), '{"ok":true}');
  assert.deepEqual([...response.headers], [
    ["content-type", "application/json"],
    ["x-poe-points", "12"],
    ["x-request-id", "abc"],
  ]);
});

Deno.test("headerResponse: a name given twice keeps both values, as ResponseInit does", () => {
  const response = headerResponse(null, 204, [["vary", "origin"], ["vary", "accept"]]);
  assert.deepEqual(response.headers.get("vary"), "origin, accept");
});

Deno.test("headerResponse: a stream body gets no content-type of its own", () => {
  const response = headerResponse(new ReadableStream(), 200, [["cache-control", "no-cache"]]);
  assert.deepEqual(response.headers.get("content-type"), null);
});

Deno.test("headerResponse: an invalid header throws as ResponseInit's would", () => {
  assert.throws(() => headerResponse("x", 200, [["x-bad", "a\nb"]]), TypeError);
  assert.throws(() => headerResponse("x", 200, [["bad name", "v"]]), TypeError);
});
