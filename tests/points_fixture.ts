// deno-lint-ignore-file no-explicit-any
/** @module Points tests' fixture: the fake Poe, the proxy with a usage service, answers and logs. */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { FakePoe, type FakePoeOptions } from "./fake_poe.ts";
import { startProxy, testConfig } from "./harness.ts";
import { createUsageService } from "../lib/usage_service.ts";
import { memoryLogger } from "../lib/log.ts";
import type { ModelRegistry } from "../lib/models.ts";

/** A server in front of the fake: see {@linkcode SetupOptions.front}. */
export type Front = { url: string } & AsyncDisposable;

export interface SetupOptions<F extends Front = Front> {
  fake?: FakePoeOptions;
  env?: Record<string, string>;
  /** Start the poller and wait for its first snapshot. Default: true. */
  poll?: boolean;
  /** Default: the tests' registry. */
  registry?: ModelRegistry;
  /**
   * A server in front of the fake for the proxy's chat calls (the usage service reads the fake
   * itself), made from the fake's URL; closed with the rest. Default: none.
   */
  front?: (fakeUrl: string) => F;
}

/** The fake Poe, the proxy with a usage service the test controls, and an SDK client. */
export async function setup<F extends Front = Front>(options: SetupOptions<F> = {}) {
  const fake = await FakePoe.start(options.fake);
  const front = options.front?.(fake.url) ?? null;
  const env = { FOOTER_WAIT_MS: "1500", ...options.env };
  const logger = memoryLogger();
  const usage = createUsageService(testConfig({ POE_BASE_URL: fake.url, ...env }), { logger });
  if (options.poll !== false) {
    usage.poller.start();
    await usage.poller.refresh();
  }
  const proxy = await startProxy({
    poeUrl: front?.url ?? fake.url,
    env,
    deps: { usage },
    registry: options.registry,
  });
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "k", maxRetries: 0 });
  return {
    fake,
    front,
    proxy,
    usage,
    client,
    usageLogs: logger.lines,
    historyCalls: () => fake.requests.filter((r) => r.path === "/usage/points_history").length,
    async [Symbol.asyncDispose]() {
      await proxy.close();
      await usage.close();
      await front?.[Symbol.asyncDispose]();
      await fake.close();
    },
  };
}

/** Parses an SSE body into its JSON chunks (without `[DONE]`). */
export function chunks(text: string): any[] {
  const events = text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
  assert.equal(events.at(-1), "[DONE]");
  return events.slice(0, -1).map((e) => JSON.parse(e));
}

export async function until(check: () => boolean, ms = 6000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * One answer to GPT-4o through the proxy, with `[[fake: ...]]` directives and a footer, and what
 * Poe bills for it (10 points plus its prompt and reply tokens, a token per four characters).
 */
export async function answerWith(
  url: string,
  o: {
    text: string;
    reply: string;
    directives: string;
    stream: boolean;
    /** Leave after the first chunk. */
    leave?: boolean;
    /** The answer is an error: its status and id are returned. */
    expectError?: boolean;
    /** The answer has no points to show (a model without a price): its text is returned. */
    noFooter?: boolean;
  },
) {
  const content = `${o.text} [[fake: reply=${o.reply}${o.directives ? "," : ""}${o.directives}]]`;
  const own = 10 + Math.ceil(content.length / 4) + Math.ceil(o.reply.length / 4);
  const abort = new AbortController();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-poe-proxy-footer": "on" },
    body: JSON.stringify({
      model: "GPT-4o",
      stream: o.stream,
      messages: [{ role: "user", content }],
    }),
    signal: abort.signal,
  });
  const status = res.status;
  /** An answer whose points were not read: an error, one left, one without any. */
  const unshown = (left: boolean) => ({
    own,
    left,
    points: null as number | null,
    estimated: null as boolean | null,
    id: res.headers.get("x-request-id"),
    status,
  });
  if (o.expectError) {
    await res.body?.cancel();
    return unshown(false);
  }
  if (o.leave) {
    const reader = res.body!.getReader();
    await reader.read();
    abort.abort();
    await reader.cancel().catch(() => {});
    return unshown(true);
  }
  let text: string;
  if (o.stream) {
    text = chunks(await res.text()).map((c) => c.choices[0]?.delta?.content ?? "").join("");
  } else {
    text = (await res.json()).choices[0].message.content;
  }
  const shown = /💰 Points( \(est\.\))?: ([\d,]+)/.exec(text);
  if (o.noFooter) {
    assert.equal(shown, null, text);
    return unshown(false);
  }
  assert.ok(shown, text);
  const points = Number(shown[2].replaceAll(",", ""));
  if (!o.stream) {
    assert.equal(res.headers.get("x-poe-points"), String(points));
    assert.equal(res.headers.get("x-poe-points-estimated"), shown[1] ? "true" : null);
  }
  const id = res.headers.get("x-request-id");
  return { own, left: false, points, estimated: shown[1] !== undefined, id, status };
}

/** The points of each `late cost` log line. */
export const lateCosts = (logs: string[]) =>
  logs.filter((l) => l.includes("late cost")).map((l) => /\bpoints=(\d+)/.exec(l)?.[1]);
