/** @module Tests of lib/poe_request.ts: what a chat call sends to Poe, seen by the fake Poe. */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startFakeAndProxy } from "./harness.ts";
import { passPoeHeaders } from "../lib/poe_request.ts";

/** The fake, the proxy wired to it, and an SDK client with a key of its own pointed at the proxy. */
async function setup() {
  const started = await startFakeAndProxy();
  const client = new OpenAI({
    baseURL: `${started.proxy.url}/v1`,
    apiKey: "client-secret-key",
    maxRetries: 0,
  });
  return { fake: started.fake, client, [Symbol.asyncDispose]: started[Symbol.asyncDispose] };
}

Deno.test("openai SDK: the client's key never reaches Poe; the proxy's Poe key does", async () => {
  await using t = await setup();
  await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi" }],
  });
  const headers = t.fake.chatRequests().at(-1)!.headers;
  assert.equal(headers.authorization, "Bearer test-poe-key");
  assert.ok(!JSON.stringify(headers).includes("client-secret-key"));
  assert.equal(headers["content-type"], "application/json");
});

Deno.test("passPoeHeaders: Poe's rate-limit and feature headers, but those the proxy set itself", () => {
  const poe = new Headers({
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "499",
    "x-poe-feature-active": "chat-completions-legacy",
    "set-cookie": "a=b",
  });
  const own: [string, string][] = [["x-ratelimit-limit-requests", "60"]];
  const to: [string, string][] = [...own];
  passPoeHeaders(poe, to, own);
  assert.deepEqual(to, [
    ["x-ratelimit-limit-requests", "60"],
    ["x-ratelimit-remaining-requests", "499"],
    ["x-poe-feature-active", "chat-completions-legacy"],
  ]);
});
