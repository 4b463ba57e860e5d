/**
 * @module The chat completions pipeline: validate, resolve, guard, clip, call Poe, then hand the
 * answer to `chat_stream.ts` or `chat_json.ts`.
 */
import { ProxyError } from "./errors.ts";
import type { HeaderList } from "./header_response.ts";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { isMedia, type ModelRegistry } from "./models.ts";
import type { RequestContext } from "./request_context.ts";
import {
  type Attempt,
  attemptsField,
  type UpstreamAnswer,
  type UpstreamClient,
} from "./upstream.ts";
import { readJsonBodyRaw } from "./request_body.ts";
import type { BodyBudget } from "./body_budget.ts";
import { upstreamBody, validateChatRequest } from "./chat_request.ts";
import { clipContext, clippedField } from "./clip.ts";
import { requestBudget } from "./count_budget.ts";
import { definitionsText, loadTokenizer, type TokenCounter, tokenizerLoaded } from "./tokens.ts";
import type { UsageService } from "./usage_service.ts";
import { stripFooters } from "./footer.ts";
import { pricedInputTokens } from "./guards.ts";
import { guardResponse } from "./guard_response.ts";
import { AnswerPoints, footerAllowed, watchAbandoned } from "./answer_points.ts";
import { longestRunMs, runningHold } from "./running_costs.ts";
import { Deadlines } from "./deadlines.ts";
import { streamAnswer } from "./chat_stream.ts";
import { earlyResponse, settlesWithin, streamStartMs } from "./early_stream.ts";
import { passPoeHeaders } from "./poe_request.ts";
import { jsonAnswer } from "./chat_json.ts";
import { usesLegacyFunctions } from "./legacy_functions.ts";
import { mayBeBilled } from "./poe_errors.ts";
import type { InFlight } from "./in_flight.ts";
import { answerLimit, thinkingBudget } from "./answer_limit.ts";
import { answerBeforeMs, clientWaitError, clientWaitMs } from "./client_wait.ts";
import { capLimitOf, learnFromAnswer } from "./cap_limit.ts";

/** What the chat handler needs. */
export interface ChatDeps {
  config: Config;
  /** The current registry (it can be replaced by a reload). */
  registry: () => ModelRegistry;
  upstream: UpstreamClient;
  logger: Logger;
  /** One counter shared by every request, so its cache serves resent histories. */
  counter: TokenCounter;
  /** Balance snapshot, guards and cost attribution. Default: none (no guards, no footer). */
  usage?: UsageService;
  /** Called right before Poe is called; throws to refuse (the global bucket in front of Poe). */
  beforeUpstream?: (ctx: RequestContext) => void;
  /** Called before each retry or ladder step; false ends the tries (the same bucket). */
  beforeRetry?: (ctx: RequestContext) => boolean;
  /**
   * A text from the client or Poe made safe for logs, pages and clients: keys hidden. Default:
   * unchanged.
   */
  loggable?: (text: string) => string;
  /** Timeouts shared by every request: `BODY_TIMEOUT_SECONDS`, `IDLE_TIMEOUT_SECONDS`. */
  deadlines: ChatDeadlines;
  /**
   * Headers the app puts on every response (request id, the client's rate limit, CORS; lower
   * case). An answer from Poe carries them from the start and sets `ctx.headersIncluded`; other
   * responses get them from the app.
   */
  responseHeaders?: HeaderList;
  /** Aborted when the shutdown's grace is over: streams still open are ended with an error event. */
  shutdown?: AbortSignal;
  /** The memory budget of large request bodies (`MAX_BODY_MEMORY_MB`). Default: none. */
  bodyBudget?: BodyBudget | null;
}

/**
 * The shared timeouts of {@linkcode ChatDeps}. A non-streamed answer's body is read within the
 * Poe client's own (`FIRST_BYTE_TIMEOUT_SECONDS`, `MEDIA_TIMEOUT_SECONDS`).
 */
export interface ChatDeadlines {
  body: Deadlines;
  /** How long a stream waits for Poe's verdict before the client gets its headers. */
  streamStart: Deadlines;
}

/** Builds the {@linkcode ChatDeadlines} for `config`. */
export function chatDeadlines(config: Config): ChatDeadlines {
  return {
    body: new Deadlines(config.bodyTimeoutSeconds * 1000),
    streamStart: new Deadlines(streamStartMs(config)),
  };
}

/** Handles `POST /v1/chat/completions`. */
export async function handleChat(
  req: Request,
  ctx: RequestContext,
  deps: ChatDeps,
): Promise<Response> {
  const { config } = deps;
  const read = await readJsonBodyRaw(req, {
    maxBytes: config.maxBodyBytes,
    deadlines: deps.deadlines.body,
    budget: deps.bodyBudget,
  }).catch((err) => {
    // Logged as the other 499s are, with when the client left.
    if (err?.status === 499) ctx.fields.error = "client gone while sending its body";
    throw err;
  });
  const lease = read.lease;
  if (lease !== null) {
    // Given back however the request ends; a refusal (a 400, a guard) ends it at once.
    ctx.atEnd(lease.release);
    if (lease.waitedMs > 0) ctx.fields.body_wait_ms = Math.round(lease.waitedMs);
  }
  const body = validateChatRequest(read.json);
  const registry = deps.registry();
  const entry = registry.lookup(body.model);
  // A name not in the registry may be a key pasted into the wrong field: logged and shown on the
  // dashboard, so it is checked first.
  ctx.fields.model = entry || !deps.loggable ? body.model : deps.loggable(body.model);
  ctx.fields.stream = body.stream === true;
  // Message content is logged only when LOG_BODIES=on, and then only at debug level.
  if (config.logBodies) {
    deps.logger.debug("request body", {
      request_id: ctx.id,
      body: { ...body, model: ctx.fields.model },
    });
  }
  if (!entry) {
    const close = registry.suggest(body.model, 3);
    throw new ProxyError(
      404,
      `The model ${JSON.stringify(ctx.fields.model)} is not in this proxy's models.yaml.` +
        (close.length ? ` Did you mean: ${close.join(", ")}?` : "") +
        " GET /v1/models lists them all.",
      { param: "model", code: "model_not_found" },
    );
  }

  const paused = deps.usage?.guards.paused() ?? null;
  if (paused) {
    ctx.fields.guard = paused.guard;
    return guardResponse(paused, body, req.headers);
  }

  // Footers this proxy wrote go before anything is counted or sent.
  const definitions = definitionsText(body);
  const history = stripFooters(body.messages);
  // One allowance of tokenizing for every count this request makes: clipping's, the cost cap's.
  const counting = requestBudget(history, definitions);
  const clip = await clipContext(history, {
    cap: registry.contextCap(entry),
    // As the cost cap prices it: the largest limit set, wherever; thinking is within it. None set:
    // clipping's default room, and the thinking budget.
    reserve: answerLimit(body),
    thinking: thinkingBudget(body),
    counter: deps.counter,
    definitions,
    budget: counting,
  });
  const clipped = clippedField(clip);
  if (clipped) ctx.fields.clipped = clipped;
  // The cost cap counts input tokens on every request it sees.
  if (config.maxPointsPerMessage > 0 && !tokenizerLoaded()) await loadTokenizer();
  const sent = { ...body, messages: clip.messages };
  const cap = deps.usage?.guards.capCheck(sent, entry, registry, counting);
  if (cap?.refusal) {
    ctx.fields.guard = cap.refusal.guard;
    return guardResponse(cap.refusal, body, req.headers);
  }
  if (config.maxPointsPerMessage > 0 && registry.estimatePoints(entry, 0) === null) {
    ctx.fields.cap = "no price in models.yaml";
  }
  const sendBody = upstreamBody(body, entry.id, clip.messages);
  // The cap holds the answer too: without a limit it could run past the estimate many times over.
  // The input as counted: clipping's figure is a byte bound when it did not need to count.
  const capLimit = capLimitOf(
    cap,
    registry.contextCap(entry),
    clip.counted ? clip.tokensAfter : cap?.input ?? clip.tokensAfter,
  );
  const limitField = capLimit === null ? null : deps.usage!.guards.limitField(entry);
  if (capLimit !== null) {
    sendBody[limitField!] = capLimit;
    ctx.fields.cap_limit = capLimit;
  }
  // From here to the reservation nothing waits: requests that passed the pause check while this
  // one was clipped may be running now, and what they hold counts before this one holds its own.
  const pausedNow = deps.usage?.guards.paused() ?? null;
  if (pausedNow) {
    ctx.fields.guard = pausedNow.guard;
    return guardResponse(pausedNow, body, req.headers);
  }
  deps.beforeUpstream?.(ctx);
  const own = deps.responseHeaders ?? [];
  /** Settles the answer's points, and then takes over the reservation from the request's end. */
  let points: AnswerPoints | null = null;
  const hold = deps.usage && runningHold(sent, entry, registry, {
    countedInput: cap?.input,
    definitions,
    standIn: config.pointsCutoff > 0,
  });
  if (hold?.standIn) ctx.fields.held_as = hold.standIn;
  const reservation = hold && deps.usage?.running.reserve(
    hold.points,
    longestRunMs(config, isMedia(entry)),
    { standIn: hold.standIn !== null },
  );
  if (reservation && reservation.points > 0) {
    ctx.atEnd(() => {
      if (!points?.settling) reservation.release();
    });
  }

  /** The answer may be billed before the proxy sees it end: see `AnswerPoints.billable`. */
  let inFlight: InFlight | null = null;
  // Filled as the calls are made: a request that ends in an error called Poe too.
  const attempts: Attempt[] = [];
  // A non-streamed answer reaches the client whole or not at all: one still coming when the
  // client's own timeout ends would be asked for again by its SDK, and billed again.
  const waitMs = sendBody.stream ? null : clientWaitMs(req.headers);
  const giveUp = waitMs === null ? null : new AbortController();
  const giveUpTimer = giveUp && setTimeout(
    () => giveUp.abort(clientWaitError(waitMs!)),
    Math.max(0, answerBeforeMs(waitMs!) - ctx.elapsedMs()),
  );
  const sending = deps.upstream.send(sendBody, {
    signal: giveUp ? AbortSignal.any([req.signal, giveUp.signal]) : req.signal,
    headers: req.headers,
    requestId: ctx.id,
    // The ladder's variant without max_tokens must pass the cost cap too.
    allowVariant: deps.usage && config.maxPointsPerMessage > 0
      ? (variant) => deps.usage!.guards.overCap(variant, entry, registry, counting) === null
      : undefined,
    mayRetry: deps.beforeRetry && (() => deps.beforeRetry!(ctx)),
    slow: entry.modality !== "text",
    attempts,
    raw: read.raw,
    bodyBytes: read.bytes,
    addedLimit: capLimit !== null,
    // A JSON answer is billed when its headers come, long before its body is read.
    onJsonAnswer: deps.usage && (() => {
      if (inFlight) return;
      inFlight = deps.usage!.costs.sent(entry.id, ctx.startedAt);
      ctx.atEnd(inFlight.end);
    }),
  });
  if (giveUpTimer !== null) {
    const disarm = () => clearTimeout(giveUpTimer);
    sending.then(disarm, disarm);
  }
  // A large body's whole share is held until Poe has it (the body built for Poe and fetch's copy
  // die then) or the call failed; then only what the request keeps of it (its messages, counted
  // again at the answer's end) until the request ends.
  if (lease !== null) sending.then(lease.shrink, lease.release);
  /** What a call that failed ends the request in. */
  const failed = (err: unknown): unknown => {
    if (attempts.length > 0) ctx.fields.attempts = attemptsField(attempts);
    // As on an answer: the client is told what was tried (retries, the ladder's variants).
    if (attempts.length > 1 && err instanceof ProxyError) {
      err.headers["x-poe-proxy-attempts"] = attemptsField(attempts);
    }
    const last = attempts.at(-1);
    if (!req.signal.aborted) {
      // The model may have run: Poe's 200 came and its answer (a JSON body to a stream) broke,
      // timed out or held none, as a non-streamed answer's failed read (`jsonAnswer` below); or
      // Poe's gateway, or the first-byte deadline, gave up on it. Not when Poe's 200 body was its
      // refusal, whatever status that names.
      const status = last?.inBody ? undefined : last?.status;
      // The client's timeout stopped a call in flight (cut before Poe's headers, or while its
      // body was read), not one between tries, which Poe refused.
      const cutCall = giveUp?.signal.aborted !== true || status === 499 || status === 200;
      if (deps.usage && err instanceof ProxyError && cutCall && mayBeBilled(err, status)) {
        watchAbandoned(deps.usage, entry.id, ctx, reservation, inFlight ?? undefined);
      }
      return err;
    }
    // Left while a stream's opening, or a JSON answer, was read: Poe may bill the answer it
    // started, so its entry is watched for, not left for the next answer to take.
    const started = last?.status === 200;
    if (started && deps.usage) {
      watchAbandoned(deps.usage, entry.id, ctx, reservation, inFlight ?? undefined);
    }
    return clientClosed(ctx, started);
  };

  /** The response for Poe's answer. */
  const answered = async (answer: UpstreamAnswer): Promise<Response> => {
    const tried = attemptsField(answer.attempts);
    ctx.fields.attempts = tried;
    if (capLimit !== null && deps.usage) {
      learnFromAnswer(deps.usage.guards, entry, {
        tokens: capLimit,
        field: limitField!,
        capOwn: capLimit === cap?.answerLimit,
      }, answer);
    }
    // Poe's response headers (a non-streamed answer's: its whole body, which the client waits
    // for too); a stream replaces it with its first event's time.
    ctx.ttfbMs = ctx.elapsedMs();

    const headers: HeaderList = [...own];
    passPoeHeaders(answer.response.headers, headers, own);
    if (clipped) headers.push(["x-poe-proxy-clipped", clipped]);
    // Said where no footer goes (a tool call, a reasoning answer with no text cut at it).
    if (capLimit !== null && answerLimit(answer.sent) !== null) {
      headers.push(["x-poe-proxy-answer-limit", String(capLimit)]);
    }
    // The ladder may have dropped max_tokens: the client is told what was sent, not only the log.
    if (answer.attempts.length > 1) headers.push(["x-poe-proxy-attempts", tried]);
    ctx.headersIncluded = deps.responseHeaders !== undefined;

    // A media model's estimate prices the newest user message, not the chat Poe counts.
    let pricedInput: number | null = null;
    if (deps.usage && isMedia(entry) && entry.per1kTokens !== null) {
      if (!tokenizerLoaded()) await loadTokenizer();
      pricedInput = pricedInputTokens(
        deps.counter,
        { ...body, messages: clip.messages },
        entry,
        counting,
      );
    }
    points = deps.usage
      ? new AnswerPoints({
        usage: deps.usage,
        config,
        registry,
        entry,
        ctx,
        annotate: config.footer !== "off",
        footer: footerAllowed(config, body, req.headers),
        clipped: clip.clipped ? clip : null,
        // The footer blames the cap only for a limit the cap set, not the window's room.
        capLimit: answerLimit(answer.sent) === capLimit && capLimit === cap?.answerLimit
          ? capLimit
          : null,
        pricedInput,
        reservation,
        inFlight,
        shutdown: deps.shutdown,
      })
      : null;
    // Image, video and audio models may work for minutes in silence: MEDIA_TIMEOUT_SECONDS.
    const media = entry.modality !== "text";
    if (sendBody.stream) {
      return streamAnswer(answer, ctx, deps, headers, body, points, media);
    }
    try {
      return await jsonAnswer(answer, ctx, deps, headers, points, usesLegacyFunctions(body));
    } catch (err) {
      // Poe answered 200 and may bill an answer that holds none, or whose client left while its
      // cost was looked for: watched for, and counted meanwhile. (A read that failed, or a body
      // that is Poe's error, ended the call in `send`.)
      const unread = req.signal.aborted ||
        (err instanceof ProxyError && mayBeBilled(err, 200));
      if (points && !points.settling && unread) points.abandoned();
      // The client's abort also broke the body's read: that is a 499, not Poe's failure.
      if (!req.signal.aborted) throw err;
      throw clientClosed(ctx, true);
    }
  };

  // A stream whose verdict takes longer than its opening may be held gets its headers now.
  if (sendBody.stream && !await settlesWithin(sending, deps.deadlines.streamStart)) {
    ctx.headersIncluded = deps.responseHeaders !== undefined;
    return earlyResponse(ctx, {
      headers: [
        ...own,
        ...(clipped ? [["x-poe-proxy-clipped", clipped] as [string, string]] : []),
        ...(capLimit !== null
          ? [["x-poe-proxy-answer-limit", String(capLimit)] as [string, string]]
          : []),
      ],
      verdict: sending.then(answered, (err) => Promise.reject(failed(err))),
      keepaliveMs: config.keepaliveSeconds * 1000,
      signal: req.signal,
      cut: deps.shutdown,
      logger: deps.logger,
      redact: deps.loggable,
    });
  }
  let answer: UpstreamAnswer;
  try {
    answer = await sending;
  } catch (err) {
    throw failed(err);
  }
  return await answered(answer);
}

/** The 499 of a client that left, before Poe answered or while it did (`started`). */
function clientClosed(ctx: RequestContext, started: boolean): ProxyError {
  ctx.fields.error = started ? "client gone while Poe answered" : "client gone before Poe answered";
  return new ProxyError(499, "The client closed the request.", { code: "client_closed_request" });
}
