/**
 * @module The warnings logged once at startup, about settings that work but put the owner's points
 * at risk or do not do what they seem to: guessable inbound keys, no inbound keys off loopback or
 * with `CORS_ORIGINS=*`, a cost cap or cutoff that cannot price some models, names in the `.env`
 * file that are no setting (typos), context caps on media models, `cheaper:` names never suggested.
 */
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import type { ModelEntry, ModelRegistry } from "./models.ts";

/** Inbound keys shorter than this can be guessed; `openssl rand -hex 24` makes a good one. */
const SHORT_KEY = 16;

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

/** Options of {@linkcode warnAtStartup}. */
export interface StartupWarningsOptions {
  config: Pick<Config, "host" | "maxPointsPerMessage" | "pointsCutoff" | "corsOrigins"> & {
    poeBaseUrl?: string;
  };
  /** The inbound keys, as from `inboundKeys`. */
  inbound: readonly string[];
  registry: ModelRegistry;
  logger: Logger;
  /**
   * The `.env` file read, the names in it that are no setting (see `unknownVariables`), and its
   * lines that set nothing (see `unreadableLines`).
   */
  dotenv?: {
    path: string;
    unknown: readonly string[];
    unreadable?: readonly number[];
    /** Its settings the environment overrides (see `overriddenByEnvironment`). */
    overridden?: readonly string[];
  };
}

/** Logs a warning for each risky setting, in a fixed order; nothing when there is none. */
export function warnAtStartup(options: StartupWarningsOptions): void {
  const { config, inbound, registry, logger, dotenv } = options;
  if (dotenv && dotenv.unknown.length > 0) {
    logger.warn("unknown settings", {
      message: unknownSettingsMessage(dotenv.path, dotenv.unknown),
    });
  }
  const unreadable = dotenv?.unreadable ?? [];
  if (unreadable.length > 0) {
    logger.warn("unreadable settings", {
      message: `${dotenv!.path} line${unreadable.length === 1 ? "" : "s"} ${
        unreadable.slice(0, 5).join(", ")
      } set nothing (write NAME=value, as POE_API_KEY=...)`,
    });
  }
  const overridden = dotenv?.overridden ?? [];
  if (overridden.length > 0) {
    logger.warn("settings overridden", {
      message: `the environment overrides ${overridden.join(", ")} of ${
        dotenv!.path
      } with other values (unset them in the shell, or in the service, to use the file's)`,
    });
  }
  const base = config.poeBaseUrl ? new URL(config.poeBaseUrl) : null;
  if (base && base.pathname !== "/" && base.pathname !== "") {
    // A gateway's prefix is one; a path pasted from elsewhere makes every call a 404.
    logger.warn("base url path", {
      message:
        `POE_BASE_URL has a path: chat calls go to ${config.poeBaseUrl}/v1/chat/completions` +
        ` and the Usage API to ${config.poeBaseUrl}/usage/ (Poe's own is https://api.poe.com)`,
    });
  }
  warnShortKeys(inbound, logger);
  if (inbound.length === 0 && !isLoopback(config.host)) {
    logger.warn("no inbound keys", {
      message:
        `listening on ${config.host} without PROXY_API_KEYS: anyone who can reach this port spends your Poe points` +
        " (browsers are answered only at the names in ALLOWED_HOSTS)",
    });
  }
  if (inbound.length === 0 && config.corsOrigins.includes("*")) {
    // The Host check stops rebinding pages, not pages of other origins calling 127.0.0.1 itself.
    logger.warn("any web page", {
      message: "CORS_ORIGINS=* without PROXY_API_KEYS: any web site open in a browser that can " +
        "reach this proxy may call it, spending your Poe points and reading the answers and your " +
        "balance; name the origins in CORS_ORIGINS, or set PROXY_API_KEYS",
    });
  }
  warnIgnoredCaps(registry, logger);
  warnCheaperFaults(registry, logger);
  warnUnpriced(registry, config, logger);
}

/**
 * Warns about models without a price that the cost cap cannot check, and that POINTS_CUTOFF holds
 * at a stand-in or at nothing while they run. At startup and on each reload.
 */
export function warnUnpriced(
  registry: ModelRegistry,
  config: Pick<Config, "maxPointsPerMessage" | "pointsCutoff">,
  logger: Logger,
): void {
  const unpriced = registry.list().filter((e) => registry.estimatePoints(e, 0) === null);
  if (config.maxPointsPerMessage > 0 && unpriced.length > 0) {
    logger.warn("cost cap blind", {
      message: `MAX_POINTS_PER_MESSAGE cannot check ${unpriced.length} models without a price ` +
        `in models.yaml (base, per_1k_tokens or per_1k_output_tokens): ${ids(unpriced)}`,
    });
  }
  if (config.pointsCutoff > 0 && unpriced.length > 0) {
    logger.warn("cutoff blind", { message: cutoffBlindMessage(registry, unpriced) });
  }
}

const kind = (e: ModelEntry) => `${/^[aeiou]/.test(e.modality) ? "an" : "a"} ${e.modality} model`;

const ids = (entries: readonly ModelEntry[]) => entries.map((e) => e.id).join(", ");

/**
 * What POINTS_CUTOFF does with requests to models without a price while they run: held at a
 * stand-in (the dearest priced model of their modality), or at nothing when none of their
 * modality has a price.
 */
function cutoffBlindMessage(registry: ModelRegistry, unpriced: readonly ModelEntry[]): string {
  const stood = unpriced.filter((e) => registry.standIn(e, 0) !== null);
  const blind = unpriced.filter((e) => registry.standIn(e, 0) === null);
  const parts: string[] = [];
  if (stood.length > 0) {
    parts.push(
      `${ids(stood)} ${stood.length === 1 ? "is" : "are"} held at the estimate of the dearest ` +
        "priced model of the same modality (a stand-in)",
    );
  }
  if (blind.length > 0) {
    parts.push(
      `${ids(blind)} ${blind.length === 1 ? "holds" : "hold"} nothing (no model of ` +
        `${blind.length === 1 ? "its" : "their"} modality has a price), so a burst of requests ` +
        "to them can pass the cutoff before Poe's balance shows their cost",
    );
  }
  return `POINTS_CUTOFF cannot price what requests to ${unpriced.length} models without a price ` +
    `in models.yaml (base, per_1k_tokens or per_1k_output_tokens) hold while they run: ` +
    `${parts.join("; ")}. Give them a price to be counted at their own.`;
}

/**
 * Warns about names of `cheaper:` lists that are never suggested: a model of another modality, or
 * one never cheaper than the model that lists it. At startup and on each reload.
 */
export function warnCheaperFaults(registry: ModelRegistry, logger: Logger): void {
  const faults = registry.cheaperFaults();
  if (faults.length === 0) return;
  const told = faults.map(({ model, listed, reason }) =>
    reason === "modality"
      ? `${model.id} (${kind(model)}) lists ${listed.id}, ${kind(listed)}`
      : `${model.id} lists ${listed.id}, whose estimate is at least ${model.id}'s for any request`
  );
  logger.warn("cheaper ignored", {
    message: "models.yaml cheaper lists name models that are never suggested: " +
      `${told.join("; ")}`,
  });
}

/** Warns about inbound keys short enough to be guessed. At startup and on each reload of the keys. */
export function warnShortKeys(inbound: readonly string[], logger: Logger): void {
  const short = inbound.filter((k) => k.length < SHORT_KEY).length;
  if (short === 0) return;
  logger.warn("short inbound keys", {
    message: `${short} of the inbound keys ${
      short === 1 ? "is" : "are"
    } shorter than ${SHORT_KEY} characters and could be guessed; make new ones with: openssl rand -hex 24`,
  });
}

/**
 * Warns about `max_tokens` on image, video and audio models, which are never clipped: the Python
 * proxy's README allowed it on any model, so such files load, and are told. At startup and on
 * each reload.
 */
export function warnIgnoredCaps(registry: ModelRegistry, logger: Logger): void {
  const ignored = registry.list().filter((e) => e.modality !== "text" && e.maxTokens !== null);
  if (ignored.length === 0) return;
  logger.warn("max_tokens ignored", {
    message: "max_tokens in models.yaml is a text model's context cap; image, video and audio " +
      `models are never clipped, so it is ignored for: ${ignored.map((e) => e.id).join(", ")}`,
  });
}

/** What a `.env` file's unknown names are taken for: a typo leaves its setting at the default. */
export function unknownSettingsMessage(path: string, names: readonly string[]): string {
  return `${path} sets ${names.join(", ")}, which ${
    names.length === 1 ? "is no setting" : "are no settings"
  } of poe-proxy (a typo leaves the setting at its default; see poe-proxy --help)`;
}
