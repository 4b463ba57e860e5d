/** @module Raw HTTP/1.1 over a TCP socket, for requests `fetch` would refuse or normalise. */

/** What came back on a raw socket. */
export interface RawResponse {
  /** The status of the first response, or 0 when the server closed without one. */
  status: number;
  /** Everything read, as latin-1 text (bytes map one to one). */
  text: string;
  /** Whether the server closed the connection (or reset it). */
  closed: boolean;
}

/** Options of {@linkcode rawRequest}. */
export interface RawRequestOptions {
  /** Stop reading after this long. Default: 5000 ms. */
  timeoutMs?: number;
  /** Stop reading once this many responses have fully arrived (by `\r\n\r\n` plus body). */
  responses?: number;
}

/** Latin-1 text of bytes: each byte one character, so nothing is lost or merged. */
export function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return out;
}

/** Bytes of latin-1 text (the inverse of {@linkcode latin1}). */
export function bytesOf(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

/** The port of a `http://127.0.0.1:PORT` URL. */
export function portOf(url: string): number {
  return Number(new URL(url).port);
}

/** Whether `text` holds `count` complete responses (headers plus a content-length body). */
function complete(text: string, count: number): boolean {
  let at = 0;
  for (let n = 0; n < count; n++) {
    const end = text.indexOf("\r\n\r\n", at);
    if (end < 0) return false;
    const head = text.slice(at, end);
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    const bodyEnd = end + 4 + (length ? Number(length[1]) : 0);
    if (text.length < bodyEnd) return false;
    at = bodyEnd;
  }
  return true;
}

/**
 * Sends `request` (latin-1 text or bytes) on a new connection to 127.0.0.1:`port` and reads until
 * the server closes, `responses` responses arrived, or the timeout.
 */
export async function rawRequest(
  port: number,
  request: string | Uint8Array,
  options: RawRequestOptions = {},
): Promise<RawResponse> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const bytes = typeof request === "string" ? bytesOf(request) : request;
    try {
      await writeAll(conn, bytes);
    } catch {
      // The server may close before it read everything; what it answered still counts.
    }
    return await readResponse(conn, options);
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

/** Reads from `conn` until it closes, `options.responses` arrived, or `options.timeoutMs`. */
export async function readResponse(
  conn: Deno.Conn,
  options: RawRequestOptions = {},
): Promise<RawResponse> {
  const want = options.responses ?? 1;
  const buf = new Uint8Array(65536);
  let text = "";
  let closed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), options.timeoutMs ?? 5000);
  });
  try {
    while (!complete(text, want)) {
      const n = await Promise.race([conn.read(buf).catch(() => null), timeout]);
      if (n === "timeout") break;
      if (n === null) {
        closed = true;
        break;
      }
      text += latin1(buf.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  return { status: status ? Number(status[1]) : 0, text, closed };
}

/** Writes all of `bytes` to `conn`. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

/** The JSON body of the first response in `text`, parsed. */
export function rawJsonBody(text: string): unknown {
  const start = text.indexOf("\r\n\r\n");
  const head = text.slice(0, start);
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  const body = text.slice(start + 4, length ? start + 4 + Number(length[1]) : undefined);
  return JSON.parse(new TextDecoder().decode(bytesOf(body)));
}

/** Options of {@linkcode breakingPoe}. */
export interface BreakingPoeOptions {
  /** How long a breaking call is held once its request came, in ms, before its connection closes. */
  holdMs: number;
  /** How many calls break, the first ones. Default: every call. */
  breaks?: number;
  /** Where the later calls' connections are relayed, byte for byte (the fake Poe's URL). */
  relayTo?: string;
  /**
   * Bytes a breaking call is answered with before it is held (a stream's 200 and its first
   * events, say). Default: none, not a byte of answer.
   */
  opening?: string;
}

/** A raw TCP "Poe" whose calls break without an answer: see {@linkcode breakingPoe}. */
export interface BreakingPoe extends AsyncDisposable {
  url: string;
  /** Connections that carried a request (a connection closed unused, as a TCP probe's, is not one). */
  calls(): number;
  close(): Promise<void>;
}

/**
 * A raw TCP server in front of Poe that reads a call's request, holds its connection `holdMs` as
 * if the model ran, then closes it without a byte of answer; once `breaks` calls broke, the
 * connections that follow are relayed to `relayTo`.
 */
export function breakingPoe(options: BreakingPoeOptions): BreakingPoe {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];
  let calls = 0;
  const closeOnce = (conn: Deno.Conn) => {
    if (open.delete(conn)) conn.close();
  };
  const serve = async (conn: Deno.Conn) => {
    const buf = new Uint8Array(65536);
    const n = await conn.read(buf);
    if (n === null) return;
    calls++;
    if (calls <= (options.breaks ?? Infinity) || !options.relayTo) {
      if (options.opening) await writeAll(conn, new TextEncoder().encode(options.opening));
      await new Promise((r) => setTimeout(r, options.holdMs));
      return;
    }
    const upstream = await Deno.connect({ hostname: "127.0.0.1", port: portOf(options.relayTo) });
    open.add(upstream);
    await writeAll(upstream, buf.subarray(0, n));
    const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
      const chunk = new Uint8Array(65536);
      try {
        for (let m; (m = await from.read(chunk)) !== null;) {
          await writeAll(to, chunk.subarray(0, m));
        }
      } finally {
        closeOnce(to);
        closeOnce(from);
      }
    };
    await Promise.allSettled([pipe(conn, upstream), pipe(upstream, conn)]);
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      open.add(conn);
      tasks.push(serve(conn).catch(() => {}).finally(() => closeOnce(conn)));
    }
  })();
  const close = async () => {
    listener.close();
    await accepting.catch(() => {});
    for (const conn of [...open]) closeOnce(conn);
    await Promise.allSettled(tasks);
  };
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    calls: () => calls,
    close,
    [Symbol.asyncDispose]: close,
  };
}
