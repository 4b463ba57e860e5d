/**
 * @module The timeouts of a call to Poe: the connect and first-byte phases, the TCP probe that
 * tells an unreachable Poe from a slow model, and the errors a call that failed to get an answer
 * ends in.
 */
import { ProxyError } from "./errors.ts";
import { type Deadline, Deadlines } from "./deadlines.ts";

/**
 * The deadlines of one first-byte timeout: the connect deadline (or the first-byte one, when
 * shorter), then the rest of the first-byte one. Deadlines of one length share a timer.
 */
export interface Phases {
  first: Deadlines;
  second: Deadlines;
  firstByteMs: number;
}

/** The {@linkcode Phases} of a first-byte timeout of `firstByteMs` with a connect one of `connectMs`. */
export function phases(connectMs: number, firstByteMs: number): Phases {
  return {
    first: new Deadlines(Math.min(connectMs, firstByteMs)),
    second: new Deadlines(Math.max(0, firstByteMs - connectMs)),
    firstByteMs,
  };
}

/** A call to Poe that ran out of time, and in which phase. */
export class TimeoutError extends Error {
  constructor(readonly phase: "connect" | "first-byte" | "idle") {
    super(`${phase} timeout`);
  }
}

/** Whether a TCP connection to the host and port of the URL `target` opens within `timeoutMs`. */
export async function probe(target: string, timeoutMs: number): Promise<boolean> {
  const url = new URL(target);
  const port = Number(url.port) || (url.protocol === "https:" ? 443 : 80);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const conn = await Promise.race([
      Deno.connect({ hostname: url.hostname, port }),
      new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), timeoutMs)),
    ]);
    if (!conn) return false;
    conn.close();
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** Options of {@linkcode firstByteDeadline}. */
export interface FirstByteOptions {
  /** The connect timeout, in milliseconds. */
  connectMs: number;
  /** Poe's URL, whose host the TCP probe connects to. */
  url: string;
  /** Aborted with a {@linkcode TimeoutError} when the call runs out of time. */
  controller: AbortController;
}

/**
 * Arms the timeout of one call until Poe's headers: past the connect deadline a TCP probe runs,
 * and a Poe it cannot reach aborts the call with a `connect` timeout; past the rest of the
 * first-byte one the call is aborted with a `first-byte` timeout. When the first-byte timeout is
 * no longer than the connect one, no probe runs: the call ends as a `first-byte` timeout. Cancel
 * it once the headers came.
 */
export function firstByteDeadline(phases: Phases, options: FirstByteOptions): Deadline {
  const { connectMs: connectTimeoutMs, url, controller } = options;
  // fetch has no connect phase of its own: when headers are slow, a TCP probe tells an
  // unreachable Poe (connect timeout) from a slow model (first-byte timeout).
  // One deadline at a time: the connect deadline first, then the rest of the first-byte one.
  const firstByte = () => controller.abort(new TimeoutError("first-byte"));
  let deadline = phases.first.add(() => {
    if (phases.firstByteMs <= connectTimeoutMs) return firstByte();
    probe(url, connectTimeoutMs).then((reachable) => {
      if (!reachable) controller.abort(new TimeoutError("connect"));
    });
    deadline = phases.second.add(firstByte);
  });
  return { cancel: () => deadline.cancel() };
}

/**
 * How long a stream's opening is read before the answer is passed on as it is: the length of
 * `streamStart` (`streamStartMs`), or what is left of the first-byte timeout when that is less
 * (the relay then times the answer out at once).
 */
export function openingWait(
  streamStart: Deadlines,
  leftMs: number,
): { wait: Promise<void>; cancel: () => void } {
  let deadline: Deadline | undefined;
  const wait = new Promise<void>((resolve) => {
    if (leftMs >= streamStart.ms) deadline = streamStart.add(resolve);
    else {
      const timer = setTimeout(resolve, Math.max(0, leftMs));
      deadline = { cancel: () => clearTimeout(timer) };
    }
  });
  return { wait, cancel: () => deadline!.cancel() };
}

/** The error a timeout ends a call in; `slow` for a media model's call, timed by its own setting. */
export function timeoutError(err: TimeoutError, slow: boolean): ProxyError {
  if (err.phase === "idle") {
    const setting = slow ? "MEDIA_TIMEOUT_SECONDS" : "IDLE_TIMEOUT_SECONDS";
    return new ProxyError(504, `Poe went silent for longer than ${setting}.`, {
      type: "timeout_error",
      code: "upstream_timeout",
    });
  }
  const setting = slow ? "MEDIA_TIMEOUT_SECONDS" : "FIRST_BYTE_TIMEOUT_SECONDS";
  return err.phase === "first-byte"
    ? new ProxyError(504, `Poe did not start answering within ${setting}.`, {
      type: "timeout_error",
      code: "upstream_timeout",
    })
    : new ProxyError(504, "Could not connect to Poe within CONNECT_TIMEOUT_SECONDS.", {
      type: "timeout_error",
      code: "upstream_connect_timeout",
    });
}

/** Options of {@linkcode networkError}. */
export interface NetworkErrorOptions {
  /** How many calls to Poe were made, the failed one included. */
  attempts: number;
  /** A media model's call. Default: false. */
  slow?: boolean;
}

/** The error a call ends in when `fetch` failed: it timed out, or Poe could not be reached. */
export function networkError(err: unknown, options: NetworkErrorOptions): ProxyError {
  if (err instanceof TimeoutError) return timeoutError(err, options.slow ?? false);
  return new ProxyError(
    502,
    `Could not reach Poe after ${options.attempts} attempt(s): ${
      err instanceof Error ? err.message : String(err)
    }`,
    { type: "upstream_error", code: "upstream_unreachable", cause: err },
  );
}

/** A network failure sooner than this after its call began came before Poe could run the model. */
const QUICK_FAILURE_MS = 1_000;

/**
 * How soon after its call began a network failure must come to be taken as one from before Poe
 * could have started the model, with a connect timeout of `connectMs`: the lesser of 1 s and that.
 */
export function quickFailureMs(connectMs: number): number {
  return Math.min(QUICK_FAILURE_MS, connectMs);
}

/**
 * Deno's fetch says `client error (Connect)` in the cause of a failure to connect: refused, a DNS
 * error, a TLS handshake or certificate that failed. The request was never sent.
 */
const CONNECT_FAILURE = /client error \(Connect\)/;

function failedToConnect(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (CONNECT_FAILURE.test(e.message)) return true;
  }
  return false;
}

/**
 * Whether a call whose `fetch` failed `ms` after it began broke while Poe held it: Poe took the
 * request, very likely, and its model may have run and been billed, so another call could run and
 * bill it twice. Deno's fetch reports such a break as `connection closed before message completed`
 * or `Connection reset by peer`, as it does a stale keep-alive connection's; that one comes within
 * milliseconds, hence `quickMs` (see {@linkcode quickFailureMs}). Not a timeout, which has rules of
 * its own, nor a failure to connect, however slow (the request was never sent).
 */
export function brokeWhileHeld(err: unknown, ms: number, quickMs: number): boolean {
  return !(err instanceof TimeoutError) && ms >= quickMs && !failedToConnect(err);
}

/**
 * The error a call ends in when its connection broke after Poe held it for `ms` (see
 * {@linkcode brokeWhileHeld}): not sent again, and the client is told not to send it again.
 */
export function heldBreakError(err: unknown, ms: number): ProxyError {
  return new ProxyError(
    502,
    `The connection to Poe broke while it was answering (after ${
      (ms / 1000).toFixed(1)
    } s, before its answer began): the model may have run and been billed, so the call was not sent again.`,
    { type: "upstream_error", code: "upstream_disconnected", cause: err },
  );
}

/** The error a failed call ends in, and whether another try may cure it. */
export interface CallFailure {
  error: ProxyError;
  /** A transient failure: worth another try while one is left. */
  retry: boolean;
}

/** Options of {@linkcode fetchFailure}. */
export interface FetchFailureOptions extends NetworkErrorOptions {
  /** Milliseconds from the call's start to its failure. */
  ms: number;
  /** See {@linkcode quickFailureMs}. */
  quickMs: number;
}

/** What a call whose `fetch` failed (no headers from Poe) ends in, and whether it is tried again. */
export function fetchFailure(err: unknown, options: FetchFailureOptions): CallFailure {
  // A model that stayed silent for FIRST_BYTE_TIMEOUT_SECONDS is not worth another wait.
  const slowModel = err instanceof TimeoutError && err.phase === "first-byte";
  // A connection that broke after Poe held the call: its model may have run, as behind a
  // gateway's 504, so it is not sent again.
  const held = brokeWhileHeld(err, options.ms, options.quickMs);
  return {
    error: held ? heldBreakError(err, options.ms) : networkError(err, options),
    retry: !slowModel && !held,
  };
}
