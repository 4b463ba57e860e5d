/**
 * @module The bare Deno proxy issue 9 measures for scale: `Deno.serve`, `fetch`, the body passed
 * through, nothing else. `deno run --allow-net=127.0.0.1 bare_proxy.ts UPSTREAM_URL` prints
 * `bare-proxy listening on http://127.0.0.1:PORT`.
 */
import { printLine } from "../../lib/log.ts";

const upstream = Deno.args[0];
Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => printLine(`bare-proxy listening on http://127.0.0.1:${port}`),
}, async (req) => {
  const url = new URL(req.url);
  const res = await fetch(upstream + url.pathname + url.search, {
    method: req.method,
    headers: req.headers,
    body: req.body,
  });
  return new Response(res.body, { status: res.status, headers: res.headers });
});
