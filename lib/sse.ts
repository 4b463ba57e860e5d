/** @module The pass-through SSE relay: forwards Poe's events as they come and watches them. */
import { createParser } from "eventsource-parser";
import type { Usage } from "./openai_types.ts";
import { RelayEvents } from "./relay_events.ts";
import { DONE, errorEvent, KEEPALIVE } from "./sse_events.ts";
import { tickerOf } from "./ticker.ts";
import { type BodyReader, smallReader, UNDER_WAY } from "./stream_start.ts";

/** What the relay saw of an answer, handed to {@linkcode RelayOptions.finish}. */
export interface StreamSummary {
  id: string | null;
  model: string | null;
  created: number | null;
  usage: Usage | null;
  finishReason: string | null;
  /** The answer carried tool call deltas. */
  toolCalls: boolean;
  /** Poe sent some of the answer (text, reasoning, a tool call or a finish), not only its role. */
  answered: boolean;
  /** Poe sent an error event, or the stream failed. */
  error: boolean;
  /** Poe ended the stream without a finish_reason; the relay sent one (`stop` or `tool_calls`). */
  finishAdded: boolean;
  /** The answer's text is data: one JSON object or array, or one URL (it then gets no footer). */
  dataText: boolean;
  /**
   * The answer has visible text: not only whitespace, reasoning or a refusal (without, it gets no
   * footer).
   */
  hasText: boolean;
  /** Events of Poe's that were not JSON objects, dropped: the SDKs end the stream on them. */
  droppedEvents: number;
}

/** What {@linkcode RelayOptions.finish} adds at the end of an answer. */
export interface StreamEnding {
  /** Text sent as a last content chunk, before the finish chunk. */
  footer?: string;
  /** Fields merged into the final `usage` object. */
  usage?: Record<string, unknown>;
}

/** How a relayed stream ended, for the request's log line. */
export interface RelayOutcome extends StreamSummary {
  /** `done` (normally), `client-gone`, `upstream-error` or `timeout`. */
  end: "done" | "client-gone" | "upstream-error" | "timeout" | "shutdown";
  /** `performance.now()` when the first event reached the client, or null. */
  firstEventAt: number | null;
}

/** Options of {@linkcode relaySse}. */
export interface RelayOptions {
  /**
   * An SSE comment is sent after the client got nothing for this long, whatever Poe sends meanwhile
   * (its own comments are not relayed).
   */
  keepaliveMs: number;
  /**
   * The first of Poe's events with part of the answer must come within this, from the start: a
   * role chunk and comments do not count.
   */
  firstByteTimeoutMs: number;
  /** Poe must send something at least this often once the answer began. */
  idleTimeoutMs: number;
  /** The setting the timeout errors name, when one setting sets both. Default: their own names. */
  timeoutSetting?: string;
  /** The client asked for `stream_options.include_usage`; otherwise a usage-only chunk is dropped. */
  includeUsage: boolean;
  /** The model the client asked for: the chunks this proxy makes name it when Poe's name none. */
  model?: string;
  /** The client offered legacy `functions`: a tool call goes to it as a `function_call`. */
  legacyFunctions?: boolean;
  /** Called once the answer ended, before the finish chunk is sent; may add a footer and usage fields. */
  finish?: (summary: StreamSummary) => Promise<StreamEnding | null> | StreamEnding | null;
  /** Aborts the upstream request. */
  abortUpstream: (reason?: unknown) => void;
  /**
   * Takes Poe's body once its `[DONE]` was read, to read its end in the background: a body
   * cancelled before its last chunk loses its keep-alive connection. Default: it is cancelled.
   */
  drainUpstream?: (body: BodyReader) => void;
  /**
   * Aborted when the proxy's shutdown cuts the answers still open: the client gets an error event
   * and `[DONE]` rather than a connection dropped mid-event.
   */
  cut?: AbortSignal;
  /** Called once when Poe's finish_reason arrives: Poe may bill the answer from then on. */
  onFinishReason?: () => void;
  /** Called once when the stream is over, however it ended. */
  onEnd?: (outcome: RelayOutcome) => void;
  /** Applied to Poe's error events, which may quote the key. Default: unchanged. */
  redact?: (text: string) => string;
  /**
   * Counts the usage of an answer Poe sent none for, from its text; it then ends the stream as
   * Poe's would have. Default: an answer without usage gets none.
   */
  estimateUsage?: (answerText: string) => Usage;
}

const encoder = new TextEncoder();
/**
 * One SSE line may not grow past this without a line break (a broken or hostile upstream); nor a
 * JSON answer to a streamed request, which is relayed as one event.
 */
export const MAX_EVENT_CHARS = 16 * 1024 * 1024;

/**
 * How long a stream may stay silent once its finish_reason came: Poe sends the usage chunk and
 * `[DONE]` right after it. Past this the answer is ended as it is, not as a timeout.
 */
const AFTER_FINISH_MS = 5_000;

/**
 * Relays Poe's SSE body to the client. Events are forwarded as soon as they are complete, as
 * their original `data` text; only the few this proxy changes are re-encoded: the finish and
 * usage chunks when a footer or cost is added, and chunks `StreamShaper` completes (the events'
 * part: {@linkcode RelayEvents}). A stream Poe ends without a finish_reason gets one; with
 * `includeUsage`, usage comes in a chunk of its own, last. Always ends with one `data: [DONE]`.
 *
 * A pull-based ReadableStream rather than a TransformStream: an upstream failure must become an
 * error event for the client, and a piped TransformStream can only pass errors on.
 */
export function relaySse(
  upstream: ReadableStream<Uint8Array> | BodyReader,
  options: RelayOptions,
): ReadableStream<Uint8Array> {
  const reader = upstream instanceof ReadableStream ? smallReader(upstream) : upstream;
  const decoder = new TextDecoder();
  let out: ReadableStreamDefaultController<Uint8Array>;
  /** Events ready for the client, sent together: one write for all an upstream read completed. */
  const pending: string[] = [];
  let closed = false;
  let firstEventAt: number | null = null;
  /**
   * A read from Poe is pending: silence is Poe's, not a slow client's. Its start is the idle
   * timeout's clock: each of Poe's reads, its comments too, begins the next.
   */
  let reading = false;
  let readSince = performance.now();
  /** The time spent waiting on Poe before the answer began: the first-byte timeout's clock. */
  let waited = 0;
  /** The last write to the client: the keep-alive's clock. */
  let lastWrite = performance.now();
  /** Part of the answer came ({@linkcode RelayEvents.opened}): its pauses are timed as idle. */
  let started = false;
  let timedOut = false;

  const emit = (event: string) => {
    if (firstEventAt === null) firstEventAt = performance.now();
    pending.push(event);
  };
  const events = new RelayEvents(options, emit);
  const summary = events.summary;
  const parser = createParser({ maxBufferSize: MAX_EVENT_CHARS, onEvent: events.onEvent });

  const tickMs = Math.max(
    10,
    Math.min(
      1000,
      options.keepaliveMs / 4,
      options.idleTimeoutMs / 4,
      options.firstByteTimeoutMs / 4,
    ),
  );
  const stopTicking = tickerOf(tickMs).add(() => {
    // While the client is not pulling, nothing is read from Poe and keep-alives are pointless.
    if (!reading) return;
    const now = performance.now();
    const late = !started
      ? waited + now - readSince >= options.firstByteTimeoutMs
      : now - readSince >=
        (summary.finishReason !== null
          ? Math.min(options.idleTimeoutMs, AFTER_FINISH_MS)
          : options.idleTimeoutMs);
    if (late) {
      timedOut = true;
      reader.cancel(new Error("idle timeout")).catch(() => {});
      return;
    }
    // Poe's own comments (`: ping`) reach nobody: they must not hold back the client's.
    if (now - lastWrite >= options.keepaliveMs) {
      lastWrite = now;
      out.enqueue(KEEPALIVE);
    }
  });

  const finishAndClose = async () => {
    if (!events.settle()) {
      return fail("Poe ended the stream without an answer.", "upstream_error", "upstream_empty");
    }
    const finishing = events.holdForEnding && !summary.error ? options.finish!(summary) : null;
    // The answer's last words go out now, not after the footer's wait for its cost.
    if (finishing instanceof Promise) flush();
    const ending = await finishing;
    if (closed) return;
    events.end(ending, pending);
    pending.push(DONE);
    flush();
    end(timedOut ? "timeout" : summary.error ? "upstream-error" : "done");
  };

  const flush = () => {
    if (pending.length === 0) return;
    out.enqueue(encoder.encode(pending.length === 1 ? pending[0] : pending.join("")));
    pending.length = 0;
    lastWrite = performance.now();
  };

  const end = (how: RelayOutcome["end"]) => {
    if (closed) return;
    closed = true;
    stopTicking();
    options.cut?.removeEventListener("abort", onCut);
    if (how !== "client-gone") {
      try {
        out.close();
      } catch {
        // Already closed or errored by a cancel.
      }
    }
    options.onEnd?.({ ...summary, end: how, firstEventAt });
  };

  /** Ends the answer with an error event and `[DONE]`, never an invented finish_reason. */
  const fail = (message: string, type: string, code: string) => {
    summary.error = true;
    pending.push(errorEvent(message, type, code), DONE);
    flush();
    options.abortUpstream(new Error(code));
    end(timedOut ? "timeout" : "upstream-error");
  };

  const onCut = () => {
    if (closed) return;
    events.cut(pending);
    pending.push(DONE);
    flush();
    options.abortUpstream(new Error("shutdown"));
    reader.cancel().catch(() => {});
    end("shutdown");
  };

  return new ReadableStream<Uint8Array>({
    start(controller) {
      out = controller;
      if (options.cut?.aborted) queueMicrotask(onCut);
      else options.cut?.addEventListener("abort", onCut, { once: true });
    },
    async pull() {
      // Read until at least one event is ready for the client, or the stream is over.
      while (!closed) {
        let result: ReadableStreamReadResult<Uint8Array>;
        readSince = performance.now();
        reading = true;
        try {
          result = await reader.read();
        } catch {
          result = { done: true, value: undefined };
          if (!timedOut && !closed) {
            return fail(
              "The connection to Poe broke before the answer was complete.",
              "upstream_error",
              "upstream_disconnected",
            );
          }
        }
        reading = false;
        if (!started) waited += performance.now() - readSince;
        if (closed) return;
        if (timedOut && summary.finishReason !== null) {
          // The answer is whole; only its ending (usage, `[DONE]`, the body's end) never came.
          timedOut = false;
          options.abortUpstream(new Error("silent after the answer's finish"));
          await finishAndClose();
          return;
        }
        if (timedOut) {
          return fail(
            started
              ? `Poe went silent for longer than ${
                options.timeoutSetting ?? "IDLE_TIMEOUT_SECONDS"
              }.`
              : `Poe did not start answering within ${
                options.timeoutSetting ?? "FIRST_BYTE_TIMEOUT_SECONDS"
              }.`,
            "timeout_error",
            "upstream_timeout",
          );
        }
        if (result.done) {
          // An event the body ended without its blank line is whole when it parses; one that
          // does not was cut off with the connection, and the answer with it.
          events.lastUnparsed = false;
          events.atEnd = true;
          parser.feed(decoder.decode() + "\n\n");
          if (events.lastUnparsed && !events.sawDone) {
            return fail(
              "The connection to Poe broke before the answer was complete.",
              "upstream_error",
              "upstream_disconnected",
            );
          }
          await finishAndClose();
          return;
        }
        try {
          parser.feed(decoder.decode(result.value, { stream: true }));
        } catch {
          return fail(
            "Poe sent an event too large to relay.",
            "upstream_error",
            "upstream_bad_event",
          );
        }
        started ||= events.opened || result === UNDER_WAY;
        if (events.sawDone) {
          if (options.drainUpstream) options.drainUpstream(reader);
          else await reader.cancel().catch(() => {});
          await finishAndClose();
          return;
        }
        if (pending.length > 0) {
          flush();
          return;
        }
      }
    },
    cancel(reason) {
      options.abortUpstream(reason);
      reader.cancel(reason).catch(() => {});
      end("client-gone");
    },
  });
}
