/** @module AnswerPoints, footerAllowed and watchAbandoned: one answer's cost, footer and extras. */
import assert from "node:assert/strict";
import {
  AnswerPoints,
  type AnswerPointsOptions,
  footerAllowed,
  watchAbandoned,
} from "../lib/answer_points.ts";
import type { ChatRequest, Usage } from "../lib/openai_types.ts";
import { RequestContext } from "../lib/request_context.ts";
import type { StreamSummary } from "../lib/sse.ts";
import type { BalanceReport, PointsEntry, PointsPage, UsageSource } from "../lib/usage_api.ts";
import { createUsageService } from "../lib/usage_service.ts";
import { memoryLogger } from "../lib/log.ts";
import { ManualClock } from "./manual_clock.ts";
import { testConfig, testRegistry } from "./harness.ts";

/** A Usage API in memory: a fixed balance and a history the test adds to. */
class MemoryUsage implements UsageSource {
  balanceCalls = 0;
  balance = 10_000;
  entries: PointsEntry[] = [];
  currentBalance(): Promise<BalanceReport> {
    this.balanceCalls++;
    return Promise.resolve({ balance: this.balance, nextGrant: null });
  }
  pointsHistory(): Promise<PointsPage> {
    return Promise.resolve({ data: [...this.entries].reverse(), hasMore: false });
  }
  /** Bills an answer of `model` that arrived at `startedAt`. */
  bill(model: string, points: number, startedAt: number, tokens?: [number, number]): void {
    this.entries.push({
      query_id: `q${this.entries.length}`,
      bot_name: model,
      creation_time: (startedAt + 100) * 1000,
      usage_type: "API",
      cost_points: points,
      ...(tokens
        ? {
          cost_breakdown_in_points: {
            Input: `1 point (${tokens[0]} tokens)`,
            Output: `1 point (${tokens[1]} tokens)`,
          },
        }
        : {}),
    });
  }
}

const USAGE: Usage = { prompt_tokens: 100, completion_tokens: 50, total_tokens: 150 };

/** A usage service on a manual clock with a balance read, and a chat request's context. */
async function setup(env: Record<string, string> = {}, options: { snapshot?: boolean } = {}) {
  const clock = new ManualClock(Date.now());
  const api = new MemoryUsage();
  const config = testConfig({ FOOTER: "on", FOOTER_WAIT_MS: "2000", ...env });
  const usage = createUsageService(config, {
    api,
    now: clock.now,
    timers: clock,
    logger: memoryLogger(),
  });
  if (options.snapshot !== false) await usage.poller.refresh();
  const registry = await testRegistry();
  const late: number[] = [];
  const context = () =>
    new RequestContext({
      id: crypto.randomUUID(),
      client: "127.0.0.1",
      method: "POST",
      path: "/v1/chat/completions",
      logger: memoryLogger(),
      onLateCost: (_ctx, points) => late.push(points),
    });
  const ctx = context();
  const points = (o: Partial<AnswerPointsOptions> = {}) =>
    new AnswerPoints({
      usage,
      config,
      registry,
      entry: registry.lookup(o.entry?.id ?? "GPT-4o")!,
      ctx,
      annotate: config.footer !== "off",
      footer: true,
      now: clock.now,
      ...o,
    });
  return {
    clock,
    api,
    config,
    usage,
    registry,
    ctx,
    context,
    late,
    points,
    async [Symbol.asyncDispose]() {
      await usage.close();
    },
  };
}

/** Resolves `promise` while the manual clock moves `ms` ahead. */
async function within<T>(clock: ManualClock, ms: number, promise: Promise<T>): Promise<T> {
  let done = false;
  promise.finally(() => done = true).catch(() => {});
  for (let t = 0; t < ms && !done; t += 250) await clock.advance(250);
  assert.ok(done, `not settled within ${ms} ms`);
  return await promise;
}

/** Whether `promise` settles without the clock moving. */
async function settlesAtOnce(clock: ManualClock, promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.finally(() => done = true).catch(() => {});
  await clock.settle();
  return done;
}

function summary(o: Partial<StreamSummary> = {}): StreamSummary {
  return {
    id: "c",
    model: "GPT-4o",
    created: 1,
    usage: USAGE,
    finishReason: "stop",
    toolCalls: false,
    answered: true,
    error: false,
    finishAdded: false,
    dataText: false,
    hasText: true,
    droppedEvents: 0,
    ...o,
  };
}

function body(o: Partial<ChatRequest> = {}): ChatRequest {
  return { model: "gpt-4o", messages: [{ role: "user", content: "Hi" }], ...o } as ChatRequest;
}

Deno.test("footerAllowed: FOOTER=on footers every answer; off, or the client's off, none", () => {
  const on = testConfig({ FOOTER: "on" });
  const off = testConfig({ FOOTER: "off" });
  const none = new Headers();
  assert.equal(footerAllowed(on, body(), none), true);
  assert.equal(footerAllowed(off, body({ stream: true }), none), false);
  assert.equal(
    footerAllowed(off, body(), new Headers({ "x-poe-proxy-footer": "on" })),
    false,
    "the owner's off wins",
  );
  for (const value of ["off", "false", "0", "no", "none", " OFF "]) {
    const headers = new Headers({ "x-poe-proxy-footer": value });
    assert.equal(footerAllowed(on, body({ stream: true }), headers), false, value);
  }
});

Deno.test("footerAllowed: FOOTER=stream footers streams, and answers whose client asks for it", () => {
  const stream = testConfig({ FOOTER: "stream" });
  assert.equal(footerAllowed(stream, body({ stream: true }), new Headers()), true);
  assert.equal(footerAllowed(stream, body({ stream: false }), new Headers()), false);
  assert.equal(footerAllowed(stream, body(), new Headers()), false);
  for (const value of ["on", "true", "1", "yes", " Yes "]) {
    const headers = new Headers({ "x-poe-proxy-footer": value });
    assert.equal(footerAllowed(stream, body(), headers), true, value);
  }
  assert.equal(
    footerAllowed(stream, body(), new Headers({ "x-poe-proxy-footer": "please" })),
    false,
  );
});

Deno.test("footerAllowed: a request with stop sequences gets none, unless its header asks for it", () => {
  const stream = testConfig({ FOOTER: "stream" });
  const on = testConfig({ FOOTER: "on" });
  const none = new Headers();
  for (const stop of ["\n", ["\n", "```"]]) {
    const req = body({ stream: true, stop } as Partial<ChatRequest>);
    assert.equal(footerAllowed(stream, req, none), false, JSON.stringify(stop));
    assert.equal(footerAllowed(on, req, none), false, JSON.stringify(stop));
    // The header forces it on, as it does for an answer not streamed.
    const asked = new Headers({ "x-poe-proxy-footer": "on" });
    assert.equal(footerAllowed(stream, req, asked), true, JSON.stringify(stop));
    assert.equal(footerAllowed(stream, body({ stop } as Partial<ChatRequest>), asked), true);
  }
  // An empty stop, or none, sets no sequence.
  for (const stop of ["", [], null]) {
    const req = body({ stream: true, stop } as Partial<ChatRequest>);
    assert.equal(footerAllowed(stream, req, none), true, JSON.stringify(stop));
  }
});

Deno.test("footerAllowed: a request that ends with the assistant's words to continue gets none, unless asked", () => {
  const on = testConfig({ FOOTER: "on" });
  const none = new Headers();
  const asked = new Headers({ "x-poe-proxy-footer": "on" });
  // A JSON prefill, or a Continue button's unfinished answer: the answer is glued to it.
  for (const prefill of ["{", "Once upon a time"]) {
    const req = body({
      stream: true,
      messages: [{ role: "user", content: "Go on" }, { role: "assistant", content: prefill }],
    });
    assert.equal(footerAllowed(on, req, none), false, prefill);
    assert.equal(footerAllowed(on, req, asked), true, prefill);
  }
  // A history with answers in it, ending with the user's turn or a tool's result, is a chat.
  for (const last of [{ role: "user", content: "Thanks" }, { role: "tool", content: "42" }]) {
    const req = body({
      stream: true,
      messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello" }, last],
    } as Partial<ChatRequest>);
    assert.equal(footerAllowed(on, req, none), true, last.role);
  }
});

Deno.test("footerAllowed: a tiny answer limit (a title, a tag) gets none, unless its header asks for it", () => {
  const stream = testConfig({ FOOTER: "stream" });
  const none = new Headers();
  const asked = new Headers({ "x-poe-proxy-footer": "on" });
  // Continue streams its chats' titles with max_tokens 6.
  for (const limit of [{ max_tokens: 6 }, { max_completion_tokens: 64 }]) {
    const req = body({ stream: true, ...limit } as Partial<ChatRequest>);
    assert.equal(footerAllowed(stream, req, none), false, JSON.stringify(limit));
    assert.equal(footerAllowed(stream, req, asked), true, JSON.stringify(limit));
  }
  for (const limit of [{ max_tokens: 65 }, { max_completion_tokens: 4096 }, {}]) {
    const req = body({ stream: true, ...limit } as Partial<ChatRequest>);
    assert.equal(footerAllowed(stream, req, none), true, JSON.stringify(limit));
  }
});

Deno.test("footerAllowed: an answer with a response_format never gets one; a null response_format is none", () => {
  const on = testConfig({ FOOTER: "on" });
  const formatted = body({ response_format: { type: "json_object" } } as Partial<ChatRequest>);
  assert.equal(footerAllowed(on, formatted, new Headers({ "x-poe-proxy-footer": "on" })), false);
  const nulled = body({ response_format: null } as unknown as Partial<ChatRequest>);
  assert.equal(footerAllowed(on, nulled, new Headers()), true);
});

Deno.test("AnswerPoints.settle: the real cost found in time goes in the footer, the extras and the log fields", async () => {
  await using s = await setup();
  s.api.bill("GPT-4o", 339, s.ctx.startedAt, [100, 50]);
  const cost = await within(s.clock, 2_000, s.points().settle(USAGE, false));
  assert.deepEqual(cost.points, { estimated: false, points: 339 });
  assert.equal(cost.balance, 10_000 - 339);
  assert.deepEqual(cost.extras, {
    cost_points: 339,
    points_estimated: false,
    balance_points: 9_661,
  });
  assert.equal(
    cost.footer,
    "\n\n---\n📊 Tokens: 150 (Input: 100, Output: 50)\n💰 Points: 339\n🏦 Current balance: 9,661 points",
  );
  assert.deepEqual(
    [s.ctx.fields.points, s.ctx.fields.points_estimated, s.ctx.fields.balance],
    [339, false, 9_661],
  );
  assert.equal(s.usage.poller.spentSinceSnapshot, 339);
});

Deno.test("AnswerPoints.settle: without an entry by FOOTER_WAIT_MS, the estimate; the real cost is a late cost and corrects the balance", async () => {
  await using s = await setup();
  const estimate = s.registry.estimatePoints(s.registry.lookup("GPT-4o")!, 100, 50)!;
  const settling = s.points().settle(USAGE, false);
  await s.clock.advance(1_900);
  assert.equal(await settlesAtOnce(s.clock, settling), false, "it waits for the real cost");
  const cost = await within(s.clock, 200, settling);
  assert.deepEqual(cost.points, {
    estimated: true,
    points: estimate.points,
    base: estimate.base,
    tokens: estimate.tokens,
  });
  assert.equal(cost.extras.points_estimated, true);
  assert.equal(cost.extras.cost_points, Math.round(estimate.points));
  assert.equal(s.ctx.fields.points, Math.round(estimate.points));
  assert.equal(s.ctx.fields.points_estimated, true);
  assert.match(cost.footer!, /\n💰 Points \(est\.\): \d+ \(Base: 140, Tokens: \d+\.\d\)\n/);
  assert.equal(s.usage.poller.spentSinceSnapshot, estimate.points);
  s.ctx.end(200);
  // Poe's entry lands later: the log line's estimate is replaced, the spending corrected.
  s.api.bill("GPT-4o", 500, s.ctx.startedAt, [100, 50]);
  await s.clock.advance(10_000);
  assert.deepEqual(s.late, [500]);
  assert.equal(s.usage.poller.spentSinceSnapshot, 500);
});

Deno.test("AnswerPoints.settle: what the request held counts until the answer's own points do, then not", async () => {
  await using s = await setup();
  const reservation = s.usage.running.reserve(400, 60_000);
  const points = s.points({ reservation });
  assert.equal(points.settling, false);
  const settling = points.settle(USAGE, false);
  assert.equal(points.settling, true, "known at once, before any wait");
  // Waiting for the real cost: the reservation counts, the answer's points not yet.
  await s.clock.advance(1_000);
  assert.deepEqual(s.usage.running.total, { points: 400, count: 1 });
  assert.equal(s.usage.poller.spentSinceSnapshot, 0);
  s.api.bill("GPT-4o", 339, s.ctx.startedAt, [100, 50]);
  await within(s.clock, 2_000, settling);
  assert.deepEqual(s.usage.running.total, { points: 0, count: 0 });
  assert.equal(s.usage.poller.spentSinceSnapshot, 339);
  // A second release (the request's end) changes nothing.
  reservation.release();
  assert.deepEqual(s.usage.running.total, { points: 0, count: 0 });
});

Deno.test("AnswerPoints.settle releases what the request held when the answer has no price", async () => {
  await using s = await setup();
  const reservation = s.usage.running.reserve(400, 60_000);
  const cost = await s.points({ entry: s.registry.lookup("Veo-3")!, reservation }).settle(
    null,
    true,
  );
  assert.equal(cost.points, null);
  assert.deepEqual(s.usage.running.total, { points: 0, count: 0 });
});

Deno.test("AnswerPoints.settle: with FOOTER off, or for a footerless answer, no footer and no wait", async () => {
  for (const [env, footerless] of [[{ FOOTER: "off" }, false], [{}, true]] as const) {
    await using s = await setup(env);
    const settling = s.points().settle(USAGE, footerless);
    assert.equal(await settlesAtOnce(s.clock, settling), true, JSON.stringify(env));
    const cost = await settling;
    assert.equal(cost.footer, null);
    assert.equal(cost.points?.estimated, true);
    assert.equal(cost.extras.points_estimated, true);
    // The cost is still looked for, for the logs and the metrics.
    s.ctx.end(200);
    s.api.bill("GPT-4o", 77, s.ctx.startedAt, [100, 50]);
    await s.clock.advance(10_000);
    assert.deepEqual(s.late, [77]);
  }
});

Deno.test("AnswerPoints.settle: pricedInput prices instead of Poe's prompt count; no usage prices the base", async () => {
  await using s = await setup({ FOOTER: "off" });
  const entry = s.registry.lookup("GPT-4o")!;
  const long = { prompt_tokens: 100, completion_tokens: 5_000, total_tokens: 5_100 };
  const split = await s.points().settle(long, false);
  assert.equal(split.points?.points, s.registry.estimatePoints(entry, 100, 5_000)!.points);
  const priced = await s.points({ pricedInput: 10 }).settle(long, false);
  assert.equal(priced.points?.points, s.registry.estimatePoints(entry, 10, 5_000)!.points);
  const bare = await s.points().settle(null, false);
  assert.equal(bare.points?.points, s.registry.estimatePoints(entry, 0, 0)!.points);
  // Tokens without the split are priced as input.
  const total = await s.points().settle({ total_tokens: 400 } as Usage, false);
  assert.equal(total.points?.points, s.registry.estimatePoints(entry, 400, 0)!.points);
});

Deno.test("AnswerPoints.settle: without a footer's usage or a balance, the footer says n/a and unknown", async () => {
  await using s = await setup({}, { snapshot: false });
  const cost = await within(s.clock, 2_100, s.points().settle(null, false));
  assert.equal(cost.balance, null);
  assert.equal("balance_points" in cost.extras, false);
  assert.equal(s.ctx.fields.balance, undefined);
  assert.match(cost.footer!, /^\n\n---\n📊 Tokens: n\/a\n💰 Points \(est\.\): 140 /);
  assert.match(cost.footer!, /\n🏦 Current balance: unknown$/);
  // A usage without prompt and completion counts shows its total alone, never NaN.
  const total = s.points().settle({ total_tokens: 400 } as Usage, false);
  assert.match((await within(s.clock, 2_100, total)).footer!, /^\n\n---\n📊 Tokens: 400\n/);
});

Deno.test("AnswerPoints.settle: answers in quick succession show a balance that only goes down", async () => {
  await using s = await setup({ FOOTER: "off" });
  const balances: (number | null)[] = [];
  for (let i = 0; i < 3; i++) balances.push((await s.points().settle(USAGE, false)).balance);
  assert.ok(balances[0]! < 10_000);
  assert.ok(balances[1]! < balances[0]! && balances[2]! < balances[1]!, balances.join(", "));
});

Deno.test("AnswerPoints.settle: a costly answer warns and names cheaper models; over the cap it says so", async () => {
  await using s = await setup({ POINTS_PER_MESSAGE_WARN: "100", MAX_POINTS_PER_MESSAGE: "300" });
  // A long chat (GPT-4o: 140 + 35 per 1k tokens): its input is most of the cost.
  const chat = { prompt_tokens: 20_000, completion_tokens: 50, total_tokens: 20_050 };
  s.api.bill("GPT-4o", 839, s.ctx.startedAt, [20_000, 50]);
  const cost = await within(s.clock, 2_000, s.points().settle(chat, false));
  const lines = cost.footer!.split("\n");
  assert.equal(
    lines.at(-2),
    "⚠️ This message cost more than 100 points. Consider starting a new chat, or a cheaper model: GPT-4o-mini.",
  );
  assert.equal(lines.at(-1), "⛔ This message went over MAX_POINTS_PER_MESSAGE (300 points).");
  // A short chat: its base price and its answer cost most, which a new chat would cost again.
  const short = await within(s.clock, 2_000, s.points().settle(USAGE, false));
  assert.equal(
    short.footer!.split("\n").at(-1),
    "⚠️ This message cost more than 100 points. Cheaper models: GPT-4o-mini.",
  );
  // A media model: a new chat would not be cheaper.
  await using m = await setup({ POINTS_PER_MESSAGE_WARN: "100", FOOTER_WAIT_MS: "0" });
  const image = await m.points({ entry: m.registry.lookup("Imagen-4")! }).settle(null, false);
  assert.match(image.footer!, /\n⚠️ This message cost more than 100 points\.$/);
});

Deno.test("AnswerPoints.settle: a stale balance shows its age; clipping shows what was dropped", async () => {
  await using s = await setup({ FOOTER_WAIT_MS: "0" });
  await s.clock.advance(10 * 60_000);
  assert.equal(s.usage.poller.stale, true);
  const clipped = { dropped: 3, tokensBefore: 200_000, tokensAfter: 120_000 };
  const cost = await s.points({ clipped }).settle(USAGE, false);
  assert.match(cost.footer!, /\n🏦 Current balance: [\d,]+ points \(as of 10 min ago\)\n/);
  assert.match(
    cost.footer!,
    /\n✂️ Context clipped: dropped 3 messages \(200,000 → 120,000 tokens\)$/,
  );
});

Deno.test("AnswerPoints.settle: an answer whose client left during the wait reports its cost late", async () => {
  await using s = await setup();
  const settling = s.points().settle(USAGE, false);
  await s.clock.advance(300);
  s.ctx.end(499);
  s.api.bill("GPT-4o", 250, s.ctx.startedAt, [100, 50]);
  const cost = await within(s.clock, 2_000, settling);
  assert.deepEqual(cost.points, { estimated: false, points: 250 });
  assert.deepEqual(s.late, [250], "the log line was written without it");
});

Deno.test("AnswerPoints.settle asks the poller for a fresh balance shortly after the answer", async () => {
  await using s = await setup({ FOOTER: "off" });
  s.usage.poller.start();
  await s.clock.settle();
  const before = s.api.balanceCalls;
  await s.points().settle(USAGE, false);
  await s.clock.advance(1_499);
  assert.equal(s.api.balanceCalls, before);
  await s.clock.advance(1);
  assert.equal(s.api.balanceCalls, before + 1);
});

Deno.test("AnswerPoints.settle: a real cost counts until a reading sent after it was read", async () => {
  await using s = await setup({}, { snapshot: false });
  s.api.bill("GPT-4o", 339, s.ctx.startedAt, [100, 50]);
  await s.clock.advance(1_000);
  // A reading taken after the entry was made: Poe may not have debited its final cost yet.
  await s.usage.poller.refresh();
  const cost = await within(s.clock, 2_000, s.points().settle(USAGE, false));
  assert.deepEqual(cost.points, { estimated: false, points: 339 });
  assert.equal(s.usage.poller.spentSinceSnapshot, 339);
  assert.equal(cost.balance, 10_000 - 339);
  // A reading sent after the cost was read shows it.
  s.api.balance = 10_000 - 339;
  await s.clock.advance(10);
  await s.usage.poller.refresh();
  assert.equal(s.usage.poller.spentSinceSnapshot, 0);
  assert.equal(s.usage.poller.snapshot?.balance, 10_000 - 339);
});

Deno.test("AnswerPoints.settle: an estimate outlives a reading taken before Poe debited the answer", async () => {
  await using s = await setup({ FOOTER_WAIT_MS: "500" });
  const estimate = s.registry.estimatePoints(s.registry.lookup("GPT-4o")!, 100, 50)!;
  const cost = await within(s.clock, 1_000, s.points().settle(USAGE, false));
  assert.equal(cost.points?.estimated, true);
  s.ctx.end(200);
  // A reading with the balance from before the debit: the estimate is still counted.
  await s.usage.poller.refresh();
  assert.equal(s.usage.poller.spentSinceSnapshot, estimate.points);
  // Poe's entry lands: the real cost replaces the estimate.
  s.api.bill("GPT-4o", 500, s.ctx.startedAt, [100, 50]);
  await s.clock.advance(10_000);
  assert.deepEqual(s.late, [500]);
  assert.ok(s.usage.poller.spentSinceSnapshot >= 500, String(s.usage.poller.spentSinceSnapshot));
});

Deno.test("AnswerPoints.settle: token counts made here are not matched with Poe's breakdowns", async () => {
  // Two entries after the start: only the tokens could tell which is this answer's, and these
  // tokens were counted here, not by Poe.
  const counted = { ...USAGE, tokens_estimated: true };
  for (const [usage, real] of [[counted, false], [USAGE, true]] as const) {
    await using s = await setup();
    s.api.bill("GPT-4o", 339, s.ctx.startedAt, [100, 50]);
    s.api.bill("GPT-4o", 900, s.ctx.startedAt, [3_000, 700]);
    const cost = await within(s.clock, 2_000, s.points().settle(usage, false));
    assert.equal(cost.points?.estimated, !real, JSON.stringify(usage));
    if (real) assert.equal(cost.points?.points, 339);
  }
});

Deno.test("AnswerPoints.finish: tool calls and data get no footer; text gets it and the usage extras", async () => {
  await using s = await setup({ FOOTER_WAIT_MS: "0" });
  const text = await s.points().finish(summary());
  assert.match(text.footer!, /^\n\n---\n📊 Tokens: 150 /);
  assert.equal(text.usage?.points_estimated, true);
  assert.equal(typeof text.usage?.balance_points, "number");
  for (
    const o of [{ toolCalls: true }, { finishReason: "tool_calls" }, { dataText: true }, {
      hasText: false,
    }]
  ) {
    const ending = await s.points().finish(summary(o));
    assert.equal(ending.footer, undefined, JSON.stringify(o));
    assert.equal(ending.usage?.points_estimated, true);
  }
});

Deno.test("AnswerPoints.completeJson appends the footer, adds the extras to usage and returns the headers", async () => {
  await using s = await setup({ FOOTER_WAIT_MS: "0" });
  const answer = {
    choices: [{
      index: 0,
      message: { role: "assistant", content: "Hello." },
      finish_reason: "stop",
    }],
    usage: { ...USAGE },
  };
  const headers = await s.points().completeJson(answer);
  const message = answer.choices[0].message;
  assert.match(message.content, /^Hello\.\n\n---\n📊 Tokens: 150 /);
  const usage = answer.usage as Record<string, unknown>;
  assert.equal(usage.points_estimated, true);
  assert.equal(headers["x-poe-points"], String(usage.cost_points));
  assert.equal(headers["x-poe-points-estimated"], "true");
  assert.equal(headers["x-poe-balance"], String(usage.balance_points));
});

Deno.test("AnswerPoints.completeJson: an answer without text keeps its content as it is, and gets the extras", async () => {
  await using s = await setup({ FOOTER_WAIT_MS: "0" });
  const messages = [
    { role: "assistant", content: "" },
    { role: "assistant", content: " \n" },
    { role: "assistant", content: "", reasoning_content: "Thinking." },
    { role: "assistant", content: null, refusal: "I can't help with that." },
  ];
  for (const message of messages) {
    const before = JSON.stringify(message);
    const answer = { choices: [{ index: 0, message, finish_reason: "stop" }], usage: { ...USAGE } };
    const headers = await s.points().completeJson(answer);
    assert.equal(JSON.stringify(message), before);
    assert.equal((answer.usage as Record<string, unknown>).points_estimated, true, before);
    assert.equal(headers["x-poe-points-estimated"], "true");
  }
});

Deno.test("AnswerPoints.completeJson: tool calls and JSON text stay as they are, unwaited; a real cost has no estimated header", async () => {
  await using s = await setup();
  const toolAnswer = {
    choices: [{
      message: {
        role: "assistant",
        content: "",
        tool_calls: [{ id: "t", type: "function", function: { name: "f", arguments: "{}" } }],
      },
      finish_reason: "stop",
    }],
    usage: { ...USAGE },
  };
  s.api.bill("GPT-4o", 339, s.ctx.startedAt, [100, 50]);
  // Nothing waits for a footer that will not be shown: the estimate, at once.
  const settling = s.points().completeJson(toolAnswer);
  assert.equal(await settlesAtOnce(s.clock, settling), true);
  const headers = await settling;
  assert.equal(toolAnswer.choices[0].message.content, "", "no footer on a tool call");
  assert.equal(headers["x-poe-points-estimated"], "true");
  const json = {
    choices: [{ message: { role: "assistant", content: '{"ok": true}' } }],
    usage: { ...USAGE },
  };
  await s.points().completeJson(json);
  assert.equal(json.choices[0].message.content, '{"ok": true}');
  // A text answer waits for its footer's real cost: no estimated header.
  const text = {
    choices: [{ message: { role: "assistant", content: "Hi" } }],
    usage: { ...USAGE },
  };
  const found = await within(s.clock, 2_000, s.points().completeJson(text));
  assert.equal(found["x-poe-points"], "339");
  assert.equal(found["x-poe-points-estimated"], undefined);
  assert.match(text.choices[0].message.content, /\n💰 Points: 339\n/);
});

Deno.test("AnswerPoints.completeJson: a tool_calls finish alone means a tool call; an empty tool_calls list does not", async () => {
  await using s = await setup({ FOOTER_WAIT_MS: "0" });
  const finished = {
    choices: [{ message: { role: "assistant", content: "Calling." }, finish_reason: "tool_calls" }],
    usage: { ...USAGE },
  };
  await s.points().completeJson(finished);
  assert.equal(finished.choices[0].message.content, "Calling.");
  const empty = {
    choices: [{
      message: { role: "assistant", content: "Hello.", tool_calls: [] },
      finish_reason: "stop",
    }],
    usage: { ...USAGE },
  };
  await s.points().completeJson(empty);
  assert.match(empty.choices[0].message.content, /^Hello\.\n\n---\n/);
});

Deno.test("AnswerPoints.completeJson with FOOTER off: body unchanged, headers still carry the points", async () => {
  await using s = await setup({ FOOTER: "off" });
  const answer = {
    choices: [{ message: { role: "assistant", content: "Hello." }, finish_reason: "stop" }],
    usage: { ...USAGE },
  };
  const headers = await s.points().completeJson(answer);
  assert.equal(answer.choices[0].message.content, "Hello.");
  assert.deepEqual(answer.usage, USAGE);
  assert.ok(Number(headers["x-poe-points"]) > 0);
  assert.equal(headers["x-poe-points-estimated"], "true");
  const estimate = s.registry.estimatePoints(s.registry.lookup("GPT-4o")!, 100, 50)!.points;
  assert.equal(headers["x-poe-points"], String(Math.round(estimate)));
  assert.equal(headers["x-poe-balance"], String(Math.round(10_000 - estimate)));
  assert.equal(s.points().annotates, false);
  // An answer without usage or choices is priced at the base and left alone.
  const odd: Record<string, unknown> = { id: "x" };
  const oddHeaders = await s.points().completeJson(odd);
  assert.equal(oddHeaders["x-poe-points"], "140");
  assert.deepEqual(odd, { id: "x" });
});

Deno.test("watchAbandoned: an abandoned answer's cost, once found, counts against POINTS_CUTOFF", async () => {
  await using s = await setup({ POINTS_CUTOFF: "5000", USAGE_POLL_SECONDS: "600" });
  s.api.balance = 6_000;
  await s.usage.poller.refresh();
  assert.equal(s.usage.guards.paused(), null);
  // The client pressed stop mid-stream; Poe billed the answer all the same.
  s.ctx.end(499);
  s.points({ entry: s.registry.lookup("Claude-Sonnet-4.6")! }).abandoned();
  s.api.bill("Claude-Sonnet-4.6", 2_000, s.ctx.startedAt);
  await s.clock.advance(30_000);
  assert.deepEqual(s.late, [2_000]);
  // 6,000 less 2,000 is under the cutoff: paused now, not after the next balance read.
  assert.equal(s.usage.poller.spentSinceSnapshot, 2_000);
  assert.equal(s.usage.guards.paused()?.guard, "paused");
});

Deno.test("watchAbandoned: a found cost counts until a reading sent after it was found", async () => {
  await using s = await setup({ USAGE_POLL_SECONDS: "600" });
  s.ctx.end(499);
  s.points().abandoned();
  s.api.bill("GPT-4o", 300, s.ctx.startedAt);
  // A reading taken before its cost was read: it may not show it.
  await s.clock.advance(1);
  assert.deepEqual(s.late, [], "found before the balance read");
  await s.usage.poller.refresh();
  for (let t = 0; t < 30_000 && s.late.length === 0; t += 100) await s.clock.advance(100);
  assert.deepEqual(s.late, [300]);
  assert.equal(s.usage.poller.spentSinceSnapshot, 300);
  // A reading sent after the cost was read shows it.
  s.api.balance = 9_700;
  await s.clock.advance(10);
  await s.usage.poller.refresh();
  assert.equal(s.usage.poller.spentSinceSnapshot, 0);
});

Deno.test("AnswerPoints.abandoned and watchAbandoned report an abandoned answer's cost late", async () => {
  await using s = await setup();
  s.ctx.end(499);
  s.points().abandoned();
  const other = s.context();
  other.end(499);
  watchAbandoned(s.usage, "Claude-Sonnet-4.6", other);
  await s.clock.advance(500);
  assert.deepEqual(s.late, []);
  s.api.bill("GPT-4o", 120, s.ctx.startedAt);
  s.api.bill("Claude-Sonnet-4.6", 80, other.startedAt);
  await s.clock.advance(30_000);
  assert.deepEqual(s.late.sort(), [120, 80].sort());
});
