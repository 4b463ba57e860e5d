/** @module The points machinery the app shares: Usage API client, balance poller, cost tracker, guards. */
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { CostTracker } from "./cost_tracker.ts";
import { Guards } from "./guards.ts";
import { RunningCosts } from "./running_costs.ts";
import type { TokenCounter } from "./tokens.ts";
import { UsagePoller } from "./usage.ts";
import { REAL_TIMERS, type Timers } from "./deadlines.ts";
import { UsageApi, type UsageSource } from "./usage_api.ts";

/** Everything about points that lives as long as the app. */
export interface UsageService extends AsyncDisposable {
  api: UsageSource;
  poller: UsagePoller;
  costs: CostTracker;
  /** What requests still running hold, counted by the pause check. */
  running: RunningCosts;
  guards: Guards;
  /** Stops the poller and the tracker; no timer is left. Idempotent. */
  close(): Promise<void>;
}

/** Options of {@linkcode createUsageService}. */
export interface UsageServiceOptions {
  logger?: Logger;
  /** The Usage API. Default: a {@linkcode UsageApi} on `config.poeBaseUrl` with `fetch`. */
  api?: UsageSource;
  /** Used by the default API. Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** Milliseconds since the epoch. Default: `Date.now`. */
  now?: () => number;
  timers?: Timers;
  /** Shared with clipping so a history is tokenized once. Default: the guards' own. */
  counter?: TokenCounter;
  userAgent?: string;
  /** Called before each Usage API call of the default API (Poe's rate limit counts them). */
  onCall?: () => void;
}

/** Builds the poller (not started: call `poller.start()` once the server listens), tracker and guards. */
export function createUsageService(
  config: Config,
  options: UsageServiceOptions = {},
): UsageService {
  const now = options.now ?? Date.now;
  const timers = options.timers ?? REAL_TIMERS;
  const own = options.api ? null : new UsageApi({
    baseUrl: config.poeBaseUrl,
    apiKey: config.poeApiKey,
    fetch: options.fetch,
    userAgent: options.userAgent,
    onCall: options.onCall,
  });
  const api = options.api ?? own!;
  const poller = new UsagePoller({
    api,
    intervalMs: config.usagePollSeconds * 1000,
    now,
    timers,
    logger: options.logger,
  });
  const costs = new CostTracker({
    api,
    keyName: config.poeApiKeyName,
    now,
    timers,
    logger: options.logger,
  });
  const running = new RunningCosts({ now, logger: options.logger });
  const guards = new Guards({
    pointsCutoff: config.pointsCutoff,
    maxPointsPerMessage: config.maxPointsPerMessage,
    snapshot: () => poller.snapshot,
    spentSince: () => poller.spentSinceSnapshot,
    shownSpentSince: () => poller.shownSpentSinceSnapshot,
    running: () => running.total,
    counter: options.counter,
    now,
    logger: options.logger,
  });
  const close = async () => {
    await Promise.all([poller.close(), costs.close()]);
    own?.close();
  };
  return { api, poller, costs, running, guards, close, [Symbol.asyncDispose]: close };
}
