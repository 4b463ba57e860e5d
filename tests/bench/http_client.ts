/** @module A minimal HTTP/1.1 keep-alive client over raw TCP that times the first and last byte. */

const encoder = new TextEncoder();
const CRLF2 = [13, 10, 13, 10];

/** The timing of one request, in milliseconds from the moment it was written. */
export interface Timing {
  status: number;
  /** First byte of the body (for a chunked body: of its first chunk). */
  firstByteMs: number;
  /** Last byte of the response. */
  lastByteMs: number;
  /** Body bytes, chunk framing excluded. */
  bodyBytes: number;
  /** The response head, lower-cased. */
  head: string;
}

/** Builds the bytes of a `POST` with a JSON body. */
export function postRequest(
  host: string,
  path: string,
  body: string,
  headers: Record<string, string> = {},
): Uint8Array {
  const payload = encoder.encode(body);
  const lines = [
    `POST ${path} HTTP/1.1`,
    `host: ${host}`,
    "content-type: application/json",
    `content-length: ${payload.length}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  const head = encoder.encode(lines.join("\r\n") + "\r\n\r\n");
  const out = new Uint8Array(head.length + payload.length);
  out.set(head);
  out.set(payload, head.length);
  return out;
}

function indexOf(buf: Uint8Array, end: number, pattern: number[], from: number): number {
  outer: for (let i = from; i + pattern.length <= end; i++) {
    for (let j = 0; j < pattern.length; j++) if (buf[i + j] !== pattern[j]) continue outer;
    return i;
  }
  return -1;
}

function latin1(buf: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i++) s += String.fromCharCode(buf[i]);
  return s;
}

/** One keep-alive connection; one request at a time. */
export class HttpConnection {
  #conn: Deno.TcpConn;
  #buf = new Uint8Array(64 * 1024);
  /** Bytes in `#buf`. */
  #len = 0;
  #closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  /** Connects to `127.0.0.1:port` (or another host) with TCP_NODELAY. */
  static async open(port: number, hostname = "127.0.0.1"): Promise<HttpConnection> {
    const conn = await Deno.connect({ hostname, port });
    conn.setNoDelay(true);
    return new HttpConnection(conn);
  }

  /** Whether the server closed the connection (or it failed); a closed one must not be reused. */
  get closed(): boolean {
    return this.#closed;
  }

  async #fill(): Promise<boolean> {
    if (this.#len === this.#buf.length) {
      const bigger = new Uint8Array(this.#buf.length * 2);
      bigger.set(this.#buf.subarray(0, this.#len));
      this.#buf = bigger;
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#len));
    if (n === null) return false;
    this.#len += n;
    return true;
  }

  /** Drops the first `n` bytes of the buffer. */
  #consume(n: number): void {
    this.#buf.copyWithin(0, n, this.#len);
    this.#len -= n;
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  /**
   * Sends `request` and reads its whole response. With `untilFirstByte`, returns as soon as the
   * first body byte arrived and leaves the rest unread (the connection is then only good for
   * {@linkcode HttpConnection.close}). After `timeoutMs` the connection is closed and this throws.
   */
  async send(request: Uint8Array, untilFirstByte = false, timeoutMs = 30_000): Promise<Timing> {
    const timer = setTimeout(() => this.close(), timeoutMs);
    try {
      return await this.#send(request, untilFirstByte);
    } catch (err) {
      if (this.#closed) throw new Error(`HTTP request failed or took over ${timeoutMs} ms: ${err}`);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async #send(request: Uint8Array, untilFirstByte: boolean): Promise<Timing> {
    const t0 = performance.now();
    await this.#writeAll(request);
    let headEnd = -1;
    while ((headEnd = indexOf(this.#buf, this.#len, CRLF2, 0)) < 0) {
      if (!(await this.#fill())) return this.#fail("closed before the response head");
    }
    const head = latin1(this.#buf, 0, headEnd).toLowerCase();
    const status = Number(head.slice(9, 12));
    const lengthMatch = /\r\ncontent-length:\s*(\d+)/.exec(head);
    const chunked = /\r\ntransfer-encoding:[^\r]*chunked/.test(head);
    this.#consume(headEnd + 4);
    let firstByteMs = -1;
    const markFirst = () => {
      if (firstByteMs < 0 && this.#len > 0) firstByteMs = performance.now() - t0;
    };
    markFirst();
    if (untilFirstByte) {
      while (this.#len === 0) {
        if (!(await this.#fill())) return this.#fail("closed before the first byte");
      }
      markFirst();
      return { status, firstByteMs, lastByteMs: firstByteMs, bodyBytes: 0, head };
    }
    let bodyBytes = 0;
    if (lengthMatch) {
      const length = Number(lengthMatch[1]);
      while (this.#len < length) {
        if (!(await this.#fill())) return this.#fail("closed inside the body");
        markFirst();
      }
      this.#consume(length);
      bodyBytes = length;
    } else if (chunked) {
      for (;;) {
        let lineEnd: number;
        while ((lineEnd = indexOf(this.#buf, this.#len, [13, 10], 0)) < 0) {
          if (!(await this.#fill())) return this.#fail("closed inside a chunk size");
          markFirst();
        }
        const size = parseInt(latin1(this.#buf, 0, lineEnd), 16);
        if (Number.isNaN(size)) return this.#fail("bad chunk size");
        // Size line, data, CRLF; the last chunk (size 0) is followed by an empty trailer line.
        const need = lineEnd + 2 + size + 2;
        while (this.#len < need) {
          if (!(await this.#fill())) return this.#fail("closed inside a chunk");
          markFirst();
        }
        this.#consume(need);
        bodyBytes += size;
        if (size === 0) break;
      }
    } else {
      // Read to the end of the connection.
      while (await this.#fill()) markFirst();
      bodyBytes = this.#len;
      this.#len = 0;
      this.#closed = true;
    }
    if (/\r\nconnection:\s*close/.test(head)) this.close();
    return { status, firstByteMs, lastByteMs: performance.now() - t0, bodyBytes, head };
  }

  #fail(what: string): never {
    this.close();
    throw new Error(`HTTP response broken: ${what}`);
  }

  /** Closes the connection. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}
