/** @module Matching paths to routes: the path a client meant, route parameters, unknown endpoints. */
import type { RequestContext } from "./request_context.ts";

/** Answers one route's requests; `params` holds the prefix route's `rest`. */
export type Handler = (
  req: Request,
  ctx: RequestContext,
  params: Record<string, string>,
) => Promise<Response> | Response;

/** One entry of the route table. */
export interface Route {
  method: string;
  /** A literal path, or a prefix whose rest is the route's one parameter, `rest`. */
  path: string | { prefix: string };
  handler: Handler;
  /** Needs an inbound key when keys are configured. */
  auth: boolean;
}

/** Whether `pathname` is `r`'s literal path, or its prefix followed by non-empty segments. */
export function matchesPath(r: Route, pathname: string): boolean {
  if (typeof r.path === "string") return r.path === pathname;
  // The rest is one or more non-empty segments, as in `/v1/models/{id}`.
  return pathname.startsWith(r.path.prefix) &&
    !`/${pathname.slice(r.path.prefix.length)}/`.includes("//");
}

/** The parameters of `pathname` under `r`: `rest` for a prefix route, none for a literal one. */
export function routeParams(r: Route, pathname: string): Record<string, string> {
  return typeof r.path === "string" ? {} : { rest: pathname.slice(r.path.prefix.length) };
}

/** Each literal path of `routes` with every route that matches it, literal or prefix. */
export function indexByPath(routes: Route[]): Map<string, Route[]> {
  // Literal paths are looked up, not tested one route at a time; prefix routes still match these.
  const byPath = new Map<string, Route[]>();
  for (const r of routes) {
    if (typeof r.path !== "string") continue;
    byPath.set(r.path, routes.filter((m) => matchesPath(m, r.path as string)));
  }
  return byPath;
}

/** A path `URL` would leave as it is: no dot segment, escape or backslash to normalize. */
const PLAIN_PATH = /^\/[\w/-]*$/;

/**
 * The path of a request, as `new URL` makes it of its target alone: Deno writes the client's
 * `Host` into `req.url` as it came (`a/b`, `a b`, `a?b`), so parsing the whole URL could route by
 * a part of the `Host`, or throw. A plain target (nearly every request's) is read off the text:
 * parsing the whole URL cost every request about 2 µs. Never throws.
 */
export function requestPath(url: string, host: string | null): string {
  const scheme = url.indexOf("://");
  let start = 0;
  if (scheme >= 0) {
    const authority = scheme + 3;
    // An absolute-form target (`GET http://x/y`) is the URL itself; its authority has no `/`.
    const after = host ? authority + host.length : -1;
    start = host && url.startsWith(host, authority) && url[after] === "/"
      ? after
      : url.indexOf("/", authority);
    if (start < 0) return "/";
  }
  const query = url.indexOf("?", start);
  const fragment = url.indexOf("#", start);
  const end = Math.min(query < 0 ? url.length : query, fragment < 0 ? url.length : fragment);
  const path = url.slice(start, end);
  if (PLAIN_PATH.test(path)) return path;
  try {
    // Joined, not resolved against a base: a target starting `//` is a path, not a host.
    return new URL(`http://h${path.startsWith("/") ? "" : "/"}${path}`).pathname;
  } catch {
    return path;
  }
}

/**
 * The path a client meant: slashes collapsed, no trailing one, and `/v1` added to the API's paths
 * when the base URL was set without it.
 */
export function clientPath(path: string): string {
  let p = path.replace(/\/{2,}/g, "/");
  if (p.length > 1 && p.endsWith("/")) p = p.slice(0, -1);
  if (p === "/chat/completions" || p === "/models" || p.startsWith("/models/")) p = `/v1${p}`;
  return p;
}

/** Endpoints of OpenAI's that Poe has no counterpart of, and what to use instead. */
const OTHER_APIS: [RegExp, string][] = [
  [
    /^\/(v1\/)?responses(\/|$)/,
    'poe-proxy serves the Chat Completions API, not the Responses API: point the client at /v1/chat/completions (Vercel AI SDK: openai.chat(model) or createOpenAICompatible; Codex: wire_api = "chat").',
  ],
  [
    /^\/(v1\/)?(completions|embeddings|images|audio|files|assistants|threads|batches|moderations)(\/|$)/,
    "Poe has no such API: poe-proxy serves POST /v1/chat/completions and GET /v1/models.",
  ],
];

/** The 404 message for `method path`: what this proxy serves, or what to use instead. */
export function unknownEndpoint(method: string, path: string): string {
  const other = OTHER_APIS.find(([pattern]) => pattern.test(path));
  return `No such endpoint: ${method} ${path.slice(0, 200)}.${
    other ? ` ${other[1]}` : " poe-proxy serves POST /v1/chat/completions and GET /v1/models."
  }`;
}

const MODEL_PATH = "/v1/models/";

/** A client's method or path beyond this is logged and quoted cut, with how much was left out. */
const SHOWN_CHARS = 200;

/**
 * `text` (a method or path the client sent) as logged and quoted: its first 200 characters and
 * how many more there were. Else a device on the network could write a line of log per byte sent.
 */
export function shortened(text: string): string {
  return text.length <= SHOWN_CHARS
    ? text
    : `${text.slice(0, SHOWN_CHARS)}…(+${text.length - SHOWN_CHARS})`;
}

/**
 * `path` as logged and quoted, `hide` (which hides keys in a text) applied to it decoded (a key
 * with characters a URL escapes), and to a model id in it as a whole text (as a model name is).
 * `path` itself when nothing was hidden.
 */
export function shownPath(path: string, hide: (text: string) => string): string {
  const plain = path.includes("%") ? decodeEscapes(path) : path;
  let shown = hide(plain);
  if (shown === plain && plain.startsWith(MODEL_PATH)) {
    shown = MODEL_PATH + hide(plain.slice(MODEL_PATH.length));
  }
  return shown === plain ? path : shown;
}

/**
 * `path` with its escapes decoded where they can be: each run of them as UTF-8, or where a run is
 * not, its ASCII ones alone. A malformed escape is left as it is, and does not keep the rest of
 * the path escaped (where a key would go unseen).
 */
function decodeEscapes(path: string): string {
  return path.replace(
    /(?:%[0-9A-Fa-f]{2})+/g,
    (run) =>
      safeDecode(run) ??
        run.replace(/%[0-7][0-9A-Fa-f]/g, (e) => String.fromCharCode(parseInt(e.slice(1), 16))),
  );
}

/** A percent-encoded path parameter decoded, or null when its escapes are malformed. */
export function safeDecode(value: string): string | null {
  try {
    return decodeURIComponent(value);
  } catch {
    return null;
  }
}
