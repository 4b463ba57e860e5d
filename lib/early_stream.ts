/**
 * @module A streamed request's response sent before Poe's verdict: when Poe (its retries, the 400
 * ladder) takes longer than a stream's opening may be held, the client gets its status, the proxy's
 * own headers and keep-alives, so that nothing in between gives up on a silent connection; then the
 * answer's relay, or the error it ended in as an error event.
 */
import { asProxyError, ProxyError } from "./errors.ts";
import type { Config } from "./config.ts";
import type { Deadlines } from "./deadlines.ts";
import type { Logger } from "./log.ts";
import type { RequestContext } from "./request_context.ts";
import { DONE, errorEvent, KEEPALIVE, SHUTDOWN_EVENT } from "./sse_events.ts";
import { tickerOf } from "./ticker.ts";
import { type HeaderList, headerResponse } from "./header_response.ts";
import { SSE_HEADERS } from "./chat_stream.ts";

/**
 * How long a stream waits for Poe's verdict, from its first call, before the client gets its
 * headers; and how long a stream's opening is read for an error once Poe's headers came. Not past
 * a keep-alive, nor 5 s: proxies and clients in front give up on a silent connection.
 */
export function streamStartMs(config: Pick<Config, "keepaliveSeconds">): number {
  return Math.min(config.keepaliveSeconds * 1000, 5_000);
}

/**
 * Resolves true once `sending` settled, false when `deadlines.ms` passed first. One shared timer:
 * nearly every request settles first, and its deadline is only cancelled.
 */
export function settlesWithin(sending: Promise<unknown>, deadlines: Deadlines): Promise<boolean> {
  return new Promise((resolve) => {
    const deadline = deadlines.add(() => resolve(false));
    const settled = () => {
      deadline.cancel();
      resolve(true);
    };
    sending.then(settled, settled);
  });
}

/** Options of {@linkcode earlyResponse}. */
export interface EarlyOptions {
  /** The proxy's own headers (Poe's are not known yet); the stream's are added. */
  headers: HeaderList;
  /**
   * The answer's response, whose body is its relay (which then ends the request), or the error
   * the request ends in.
   */
  verdict: Promise<Response>;
  /** A keep-alive comment is sent at once, then this often until the verdict. */
  keepaliveMs: number;
  /** The client's request signal: the call to Poe listens to it, and it aborts when the client leaves. */
  signal: AbortSignal;
  /** Aborted when the proxy's shutdown cuts the requests still open. */
  cut?: AbortSignal;
  logger: Logger;
  /** Applied to an error's message, which may quote a key. Default: unchanged. */
  redact?: (text: string) => string;
}

const encoder = new TextEncoder();

/**
 * The `200` event stream of a request whose verdict is not ready: keep-alives, then the relayed
 * answer, or one error event and `[DONE]`. A request that ends without an answer is logged and
 * counted with the status its error would have had, as a stream held until its verdict is.
 */
export function earlyResponse(ctx: RequestContext, options: EarlyOptions): Response {
  let out!: ReadableStreamDefaultController<Uint8Array>;
  /** The relay's reader, once Poe answered. */
  let relay: ReadableStreamDefaultReader<Uint8Array> | null = null;
  /** Nothing more is written: the stream ended, or its client left. */
  let over = false;
  let stopTicking = () => {};

  const stopWaiting = () => {
    stopTicking();
    options.cut?.removeEventListener("abort", onCut);
  };
  const close = (events: string) => {
    over = true;
    stopWaiting();
    if (events) out.enqueue(encoder.encode(events));
    out.close();
  };
  /** No answer was relayed: the request counts as the error it is, not as a relayed stream. */
  const endAs = (status: number) => {
    ctx.deferred = false;
    ctx.end(status);
  };
  const onCut = () => {
    if (over) return;
    close(SHUTDOWN_EVENT + DONE);
    // As the shutdown logs a request with no answer yet; the process exits next, which cuts the
    // call to Poe as it does a held one's. An answer that still comes is let go (below).
    ctx.fields.end = "shutdown";
    endAs(503);
  };

  const ready = options.verdict.then((response) => {
    // Too late (the shutdown, or a client gone): the relay ends itself as a client gone, and
    // counts the answer Poe may bill.
    if (over) return void response.body?.cancel(new Error("stream over")).catch(() => {});
    stopWaiting();
    // The relay counts its keep-alive interval from now; the last one here may be nearly as old
    // (the ticker is shared): without this, the silence could reach twice KEEPALIVE_SECONDS.
    out.enqueue(KEEPALIVE);
    relay = response.body!.getReader();
  }, (err) => {
    if (ctx.ended) return;
    if (err instanceof Error) err.message = options.redact?.(err.message) ?? err.message;
    // What the app logs for a request that failed before its response.
    if (!(err instanceof ProxyError)) {
      options.logger.error("unhandled error", { request_id: ctx.id, error: err });
    } else if (err.status >= 500) {
      options.logger.warn("request failed", { request_id: ctx.id, error: err.message });
    }
    const error = asProxyError(err);
    const gone = options.signal.aborted;
    if (!over) {
      close(gone ? "" : errorEvent(error.message, error.type, error.code, error.param) + DONE);
    }
    endAs(gone ? 499 : error.status);
  });

  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      out = controller;
      // At once: a proxy in front that waits for the body's first byte gets it now.
      out.enqueue(KEEPALIVE);
      stopTicking = tickerOf(options.keepaliveMs).add(() => {
        // A client that is not reading gets no pile of them.
        if ((out.desiredSize ?? 0) > 0) out.enqueue(KEEPALIVE);
      });
      if (options.cut?.aborted) queueMicrotask(onCut);
      else options.cut?.addEventListener("abort", onCut, { once: true });
    },
    async pull() {
      if (relay === null) await ready;
      if (relay === null || over) return;
      const { done, value } = await relay.read();
      if (over) return;
      if (done) {
        over = true;
        out.close();
      } else out.enqueue(value);
    },
    cancel(reason) {
      over = true;
      stopWaiting();
      // Before the verdict, the client's leaving aborted its signal, and with it the call to Poe:
      // that call's end logs the request (499). After it, the relay's cancel does.
      return relay?.cancel(reason);
    },
  });
  ctx.fields.early = true;
  // Ended by the relay, or here when there is no answer.
  ctx.deferred = true;
  return headerResponse(stream, 200, [...options.headers, ...SSE_HEADERS]);
}
