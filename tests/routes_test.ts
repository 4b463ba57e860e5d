/** @module Route matching: literal and prefix paths, the path a client meant, unknown endpoints. */
import assert from "node:assert/strict";
import {
  clientPath,
  indexByPath,
  matchesPath,
  requestPath,
  type Route,
  routeParams,
  safeDecode,
  shownPath,
  unknownEndpoint,
} from "../lib/routes.ts";
import { ApiKeys } from "../lib/api_keys.ts";

function route(method: string, path: Route["path"]): Route {
  return { method, path, auth: false, handler: () => new Response(null) };
}

const models = route("GET", "/v1/models");
const model = route("GET", { prefix: "/v1/models/" });

Deno.test("matchesPath: a literal path matches itself only", () => {
  assert.equal(matchesPath(models, "/v1/models"), true);
  assert.equal(matchesPath(models, "/v1/models/"), false);
  assert.equal(matchesPath(models, "/v1/model"), false);
});

Deno.test("matchesPath: a prefix matches non-empty segments after it, never an empty one", () => {
  assert.equal(matchesPath(model, "/v1/models/gpt-4o"), true);
  assert.equal(matchesPath(model, "/v1/models/org/gpt-4o"), true);
  assert.equal(matchesPath(model, "/v1/models/"), false);
  assert.equal(matchesPath(model, "/v1/models/a//b"), false);
  assert.equal(matchesPath(model, "/v1/models/a/"), false);
  assert.equal(matchesPath(model, "/v1/modelsx"), false);
});

Deno.test("routeParams: a prefix route's rest; none for a literal route", () => {
  assert.deepEqual(routeParams(model, "/v1/models/org/gpt-4o"), { rest: "org/gpt-4o" });
  assert.deepEqual(routeParams(models, "/v1/models"), {});
});

Deno.test("indexByPath: each literal path with every route matching it, in table order", () => {
  const post = route("POST", "/v1/models");
  const exact = route("GET", "/v1/models/special");
  const index = indexByPath([models, model, post, exact]);
  assert.deepEqual([...index.keys()], ["/v1/models", "/v1/models/special"]);
  assert.deepEqual(index.get("/v1/models"), [models, post]);
  // The prefix route matches the literal one's path too.
  assert.deepEqual(index.get("/v1/models/special"), [model, exact]);
});

Deno.test("clientPath collapses slashes, drops a trailing one, and adds a missing /v1", () => {
  assert.equal(clientPath("//v1//chat/completions/"), "/v1/chat/completions");
  assert.equal(clientPath("/chat/completions"), "/v1/chat/completions");
  assert.equal(clientPath("/models"), "/v1/models");
  assert.equal(clientPath("/models/gpt-4o"), "/v1/models/gpt-4o");
  assert.equal(clientPath("/"), "/");
  assert.equal(clientPath("/healthz/"), "/healthz");
  // Only the API's paths get /v1.
  assert.equal(clientPath("/metrics"), "/metrics");
  assert.equal(clientPath("/modelsx"), "/modelsx");
});

Deno.test("unknownEndpoint names the request and says what to use instead", () => {
  assert.equal(
    unknownEndpoint("GET", "/v2/nothing"),
    "No such endpoint: GET /v2/nothing. poe-proxy serves POST /v1/chat/completions and GET /v1/models.",
  );
  assert.match(unknownEndpoint("POST", "/v1/responses"), /not the Responses API/);
  assert.match(unknownEndpoint("POST", "/responses/abc"), /not the Responses API/);
  assert.match(unknownEndpoint("POST", "/v1/embeddings"), /Poe has no such API/);
  assert.doesNotMatch(unknownEndpoint("POST", "/v1/responsesx"), /Responses API/);
  // A long path is cut in the message.
  const long = unknownEndpoint("GET", `/${"a".repeat(1000)}`);
  assert.ok(long.includes(`/${"a".repeat(199)}.`));
  assert.ok(!long.includes("a".repeat(200)));
});

Deno.test("safeDecode decodes percent escapes, and gives null for malformed ones", () => {
  assert.equal(safeDecode("a%2Fb%20c"), "a/b c");
  assert.equal(safeDecode("plain"), "plain");
  assert.equal(safeDecode("%E0%A4%A"), null);
  assert.equal(safeDecode("%"), null);
});

Deno.test("shownPath hides a key in a path, escaped or not, and a short one as a model id", () => {
  const key = "goodkey-0123456789abcdef0123";
  const keys = new ApiKeys([key, "q7$"]);
  const hide = (text: string) => keys.hide(text);
  assert.equal(shownPath(`/v1/models/${key}`, hide), "/v1/models/(hidden)");
  assert.equal(shownPath(`/v1/${key}/x`, hide), "/v1/(hidden)/x");
  assert.equal(shownPath(`/v1/models/Bearer%20${key}`, hide), "/v1/models/Bearer (hidden)");
  assert.equal(shownPath(`/v1/models/${encodeURIComponent(key)}`, hide), "/v1/models/(hidden)");
  assert.equal(shownPath("/v1/models/q7%24", hide), "/v1/models/(hidden)");
  // A malformed escape, or escapes that are not UTF-8, leave the rest decoded: the key is seen.
  assert.equal(shownPath(`/v1/models/${key.slice(0, -1)}%33%zz`, hide), "/v1/models/(hidden)%zz");
  assert.equal(shownPath(`/v1/models/${key.slice(0, -1)}%33%ff`, hide), "/v1/models/(hidden)%ff");
  // Elsewhere a short key is no word of its own: paths stay as they came.
  for (const path of ["/v1/q7$", "/v1/models/gpt-4o", "/v1/models/a%20b", "/v1/models/%E0%A4%A"]) {
    assert.equal(shownPath(path, hide), path);
  }
});

Deno.test("requestPath is the path new URL makes of the target, read off plain ones", () => {
  const host = "127.0.0.1:8080";
  for (
    const target of [
      "/v1/chat/completions",
      "/v1/models?limit=5",
      "/v1/models/GPT-4o#part",
      "/v1/models?next=/v1/x#y",
      "/v1//chat/completions/",
      "//chat/completions",
      "/",
      "/v1/./models",
      "//v1/./models",
      "/v1/x/../models",
      "/v1/models/%47PT-4o",
      "/v1/models/GPT-4.1",
      "/a\\b",
      "/a b",
      "/Ünïcode",
    ]
  ) {
    const expected = new URL(`http://${host}${target}`).pathname;
    assert.equal(requestPath(`http://${host}${target}`, host), expected, target);
  }
  assert.equal(requestPath("http://[::1]:8080/v1/models", "[::1]:8080"), "/v1/models");
  // Deno writes the Host as it came: the path is the target's, whatever the Host holds.
  for (const odd of ["a/b", "a?b", "a#b", "a\\b", "a b", "h:1/../y", "127.0.0.1:99999"]) {
    assert.equal(requestPath(`http://${odd}/v1/models`, odd), "/v1/models", odd);
    assert.equal(requestPath(`http://${odd}/v1/./models`, odd), "/v1/models", odd);
  }
  // No Host: Deno's own name for itself. An absolute-form target: the URL is the target.
  assert.equal(requestPath("http://localhost:8080/v1/models", null), "/v1/models");
  assert.equal(requestPath("http://other:5/v1/models?x", "a"), "/v1/models");
  assert.equal(requestPath("http://ab/v1/./models", "a"), "/v1/models");
  assert.equal(requestPath("http://h*", "h"), "/", "OPTIONS *");
});
