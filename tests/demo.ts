/**
 * @module `deno task demo`: the fake Poe and the proxy wired to it, on free ports, until Ctrl-C.
 *
 * No Poe key and no network needed. `PORT` picks the proxy's port (default: a free one); nothing
 * else is read from the environment, so a real `POE_API_KEY` is never used here.
 */
import { createApp } from "../lib/app.ts";
import { resolveConfig } from "../lib/config.ts";
import { createLogger, printError, printLine } from "../lib/log.ts";
import { ModelRegistry } from "../lib/models.ts";
import { FakePoe } from "./fake_poe.ts";

const MODELS = new URL("../models.yaml", import.meta.url);

async function main(): Promise<void> {
  const fake = await FakePoe.start();
  const config = resolveConfig({
    env: {
      POE_API_KEY: fake.apiKey,
      POE_BASE_URL: fake.url,
      HOST: "127.0.0.1",
      PORT: Deno.env.get("PORT") ?? "0",
    },
  });
  const registry = ModelRegistry.parse(await Deno.readTextFile(MODELS), "models.yaml");
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  const app = createApp({ config, version: "demo", registry: () => registry, logger });
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    onListen: (addr) => resolve(addr as Deno.NetAddr),
    handler: (req, info) => app.handler(req, { remoteAddr: info.remoteAddr as Deno.NetAddr }),
  });
  const url = `http://127.0.0.1:${(await listening).port}`;
  // As main.ts does once listening: the footer and the dashboard show the fake's balance.
  app.usage.poller.start();
  const endpoint = `${url}/v1/chat/completions`;
  const json = '-H "Content-Type: application/json"';
  printLine(
    `poe-proxy demo listening on ${url} (fake Poe on ${fake.url}, ${registry.size} models)`,
  );
  printLine("");
  printLine("Ask for an answer:");
  printLine(
    `  curl ${endpoint} ${json} \\\n    -d '{"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}]}'`,
  );
  printLine("");
  printLine("Watch one stream in (the [[fake: ...]] marker tells the fake Poe how to answer):");
  printLine(
    `  curl -N ${endpoint} ${json} \\\n    -d '{"model": "claude-sonnet-4.6", "stream": true, "messages": [{"role": "user", "content": "Tell me a story [[fake: words=30,stall=80]]"}]}'`,
  );
  printLine("");
  printLine(`Any OpenAI client works too: base URL ${url}/v1, any API key. Ctrl-C stops.`);

  const { promise: stopped, resolve: stop } = Promise.withResolvers<void>();
  const onSignal = () => stop();
  Deno.addSignalListener("SIGINT", onSignal);
  await stopped;
  Deno.removeSignalListener("SIGINT", onSignal);
  await server.shutdown();
  await app.close();
  await fake.close();
  printLine("demo stopped");
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    printError(`demo: ${err instanceof Error ? err.message : String(err)}`);
    Deno.exit(1);
  }
}
