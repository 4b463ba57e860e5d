/** @module A fake Poe with 30 days of history and a proxy with its usage service, for dashboard tests. */
import { createUsageService, type UsageService } from "../lib/usage_service.ts";
import { createLogger } from "../lib/log.ts";
import { FakePoe } from "./fake_poe.ts";
import { startProxy, testConfig, type TestProxy } from "./harness.ts";

const DAY_MS = 86_400_000;

/** Models seeded into the history, with a daily cost each. */
export const SEEDED = [
  { bot_name: "GPT-4o", cost: 100 },
  { bot_name: "Claude-Sonnet-4.6", cost: 250 },
];

/**
 * Seeds one entry per seeded model per day for the last 30 days (today's at `now - 1 min`), plus
 * a `Chat` entry today. Day `d` (0 = today) costs `cost + d`.
 */
export function seedHistory(fake: FakePoe, now = Date.now()): void {
  for (let d = 0; d < 30; d++) {
    for (const m of SEEDED) {
      fake.addHistory({
        bot_name: m.bot_name,
        creation_time: (now - d * DAY_MS - 60_000) * 1000,
        cost_points: m.cost + d,
      });
    }
  }
  fake.addHistory({
    bot_name: "Web-Search",
    usage_type: "Chat",
    creation_time: (now - 120_000) * 1000,
    cost_points: 7,
  });
}

/** A proxy wired to a fake Poe through a started usage service. */
export interface DashboardSetup extends AsyncDisposable {
  fake: FakePoe;
  proxy: TestProxy;
  usage: UsageService;
}

/** Starts the fake (balance `balance`, history seeded), the usage service, and the proxy. */
export async function startDashboardSetup(
  options: { env?: Record<string, string>; balance?: number } = {},
): Promise<DashboardSetup> {
  const fake = await FakePoe.start({ balance: options.balance ?? 1_234_567 });
  seedHistory(fake);
  const env = { FOOTER: "off", POE_BASE_URL: fake.url, ...options.env };
  const usage = createUsageService(testConfig(env), {
    logger: createLogger({ level: "error", write: () => {} }),
  });
  usage.poller.start();
  await usage.poller.refresh();
  const proxy = await startProxy({ poeUrl: fake.url, env, deps: { usage } });
  return {
    fake,
    proxy,
    usage,
    async [Symbol.asyncDispose]() {
      await proxy.close();
      await usage.close();
      await fake.close();
    },
  };
}
