/**
 * @module Points held by requests still running: the pause check counts them until each answer's
 * own points are counted, so a burst sent while the balance is just above the cutoff cannot all
 * pass it.
 */
import { answerLimit } from "./answer_limit.ts";
import type { Config } from "./config.ts";
import { DEFAULT_COMPLETION_TOKENS, newestUserText } from "./guards.ts";
import type { Logger } from "./log.ts";
import { isMedia, type ModelEntry, type ModelRegistry } from "./models.ts";
import type { ChatRequest } from "./openai_types.ts";
import { LADDER_STEPS, MAX_WAIT_SECONDS } from "./retry_ladder.ts";
import { messageAttachmentTokens, messageTextChars } from "./token_bounds.ts";
import { definitionsText } from "./tokens.ts";

/** One request's hold on the points it may cost. */
export interface Reservation {
  /** The points held; 0 for a request that holds nothing. */
  readonly points: number;
  /** Held at a stand-in's price: its model has none in `models.yaml` (see {@linkcode runningHold}). */
  readonly standIn: boolean;
  /**
   * Stops counting it; true when it was still counted. Idempotent: only the first call of this or
   * the expiry counts.
   */
  release(): boolean;
}

/** What requests still running hold. */
export interface RunningTotal {
  /** Points held, the sum of the reservations still counted. */
  points: number;
  /** Reservations still counted (requests that hold more than 0 points). */
  count: number;
  /** How many of them hold a stand-in's price (see {@linkcode runningHold}); absent when none. */
  standIns?: number;
}

/** Options of {@linkcode RunningCosts}. */
export interface RunningCostsOptions {
  /** Milliseconds since the epoch. Default: `Date.now`. */
  now?: () => number;
  /** Told when a reservation outlived its bound (a leak, or a stream longer than foreseen). */
  logger?: Logger;
}

/** A reservation that holds nothing: never counted, nothing to release. */
const NOTHING: Reservation = Object.freeze({ points: 0, standIn: false, release: () => false });

interface Held extends Reservation {
  readonly expiresAt: number;
  readonly reservedAt: number;
}

/**
 * The points of requests still running. Reserving and releasing are O(1); a reservation older than
 * its bound stops counting at the next reading (a sweep only when one is due, no timer), so one
 * never released by mistake cannot pause the proxy for good.
 */
export class RunningCosts {
  readonly #now: () => number;
  readonly #logger: Logger | undefined;
  /** In reservation order. */
  readonly #held = new Set<Held>();
  #points = 0;
  /** Reservations of `#held` at a stand-in's price. */
  #standIns = 0;
  /** The earliest expiry among `#held`: before it, a reading sweeps nothing. */
  #nextExpiry = Infinity;

  constructor(options: RunningCostsOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger;
  }

  /**
   * Holds `points` until the returned reservation is released, or for `maxAgeMs` at most. Points
   * that are not a positive finite number hold nothing.
   *
   * @param options.standIn The points are a stand-in's (see {@linkcode runningHold}). Default:
   * false.
   */
  reserve(points: number, maxAgeMs: number, options: { standIn?: boolean } = {}): Reservation {
    const standIn = options.standIn ?? false;
    if (!(points > 0 && Number.isFinite(points))) return NOTHING;
    const reservedAt = this.#now();
    const expiresAt = reservedAt + Math.max(0, maxAgeMs);
    const held: Held = {
      points,
      standIn,
      reservedAt,
      expiresAt,
      release: () => this.#drop(held),
    };
    this.#held.add(held);
    this.#points += points;
    if (standIn) this.#standIns++;
    if (expiresAt < this.#nextExpiry) this.#nextExpiry = expiresAt;
    return held;
  }

  /** What the requests still running hold now; drops the reservations past their bound first. */
  get total(): RunningTotal {
    if (this.#now() >= this.#nextExpiry) this.#sweep();
    const total: RunningTotal = { points: this.#points, count: this.#held.size };
    if (this.#standIns > 0) total.standIns = this.#standIns;
    return total;
  }

  #drop(held: Held): boolean {
    if (!this.#held.delete(held)) return false;
    if (held.standIn) this.#standIns--;
    // A float sum drifts; empty is exactly nothing.
    this.#points = this.#held.size === 0 ? 0 : Math.max(0, this.#points - held.points);
    return true;
  }

  #sweep(): void {
    const now = this.#now();
    let next = Infinity;
    for (const held of this.#held) {
      if (held.expiresAt > now) {
        if (held.expiresAt < next) next = held.expiresAt;
        continue;
      }
      this.#drop(held);
      this.#logger?.warn("running request's points expired", {
        points: Math.round(held.points),
        age_s: Math.round((now - held.reservedAt) / 1000),
        message:
          "a request ran longer than its bound (a long stream, or a hold never let go): its estimate no longer counts",
      });
    }
    this.#nextExpiry = next;
  }
}

/**
 * The longest a chat request may run, the bound of its reservation: every call of
 * `UPSTREAM_RETRIES` + 1 waiting its whole first-byte timeout and the longest backoff
 * (`MAX_WAIT_SECONDS`), and each step of the 400 ladder its first-byte timeout; then the answer
 * read for a first-byte timeout again (a JSON answer's limit) or an idle one, and the footer's
 * wait for the cost. For image, video and audio models, `MEDIA_TIMEOUT_SECONDS` stands for both. A stream has no total limit, only its idle one: one
 * longer than this stops counting early, which leaves the guard less strict for that request
 * alone, where a leak would pause every request for as long as it lasts.
 */
export function longestRunMs(config: Config, media: boolean): number {
  const wait = media ? config.mediaTimeoutSeconds : config.firstByteTimeoutSeconds;
  const answer = media
    ? config.mediaTimeoutSeconds
    : Math.max(config.firstByteTimeoutSeconds, config.idleTimeoutSeconds);
  const calls = config.upstreamRetries + 1;
  // The ladder's calls follow a 400 at once, without a backoff, and use up no retry.
  const ladder = LADDER_STEPS * wait;
  return (calls * (wait + MAX_WAIT_SECONDS) + ladder + answer) * 1000 + config.footerWaitMs;
}

/** Options of {@linkcode runningHold}. */
export interface RunningEstimateOptions {
  /** The input tokens the cost cap counted for this request, when it did. */
  countedInput?: number | null;
  /** `definitionsText(body)`, when the caller has it. */
  definitions?: string;
  /**
   * Whether a model without a price holds a stand-in's estimate (`POINTS_CUTOFF` is set). Default:
   * false: it holds nothing.
   */
  standIn?: boolean;
}

/** What {@linkcode runningHold} prices a request at. */
export interface RunningHold {
  /** The points to hold. */
  points: number;
  /** The `poe_name` of the stand-in priced instead of a model without a price, else null. */
  standIn: string | null;
}

/**
 * What a request about to be sent may cost, held while it runs (a {@linkcode Reservation}):
 * priced as the cost cap prices it, but cheap enough for every request, and without loading the
 * tokenizer. Input tokens are `countedInput` when the cost cap counted them, else a token per four
 * characters of the text sent (the messages' text, and tool definitions for a text model; the
 * newest user message for an image, video or audio model), plus a text model's images, files and
 * audio at their estimates (`attachment_tokens.ts`: a PDF by its pages). Answer
 * tokens are the request's limit up to {@linkcode DEFAULT_COMPLETION_TOKENS}: agents send limits of
 * 64k and more, and held at that a few of them would pause the proxy far above the cutoff. A model
 * without a price holds nothing, or with `standIn` what the dearest priced model of its modality
 * would for the same tokens (`ModelRegistry.standIn`): else a burst to it would pass the cutoff
 * unseen until Poe's balance shows its cost.
 */
export function runningHold(
  body: ChatRequest,
  entry: ModelEntry,
  registry: ModelRegistry,
  options: RunningEstimateOptions = {},
): RunningHold {
  let input = options.countedInput ?? null;
  if (input === null) {
    let chars = 0;
    let attachments = 0;
    if (isMedia(entry)) chars = newestUserText(body.messages).length;
    else {
      for (const message of body.messages) {
        chars += messageTextChars(message);
        attachments += messageAttachmentTokens(message);
      }
      chars += (options.definitions ?? definitionsText(body)).length;
    }
    input = Math.ceil(chars / 4) + attachments;
  }
  const output = Math.min(
    answerLimit(body) ?? DEFAULT_COMPLETION_TOKENS,
    DEFAULT_COMPLETION_TOKENS,
  );
  const own = registry.estimatePoints(entry, input, output);
  if (own !== null) return { points: own.points, standIn: null };
  const standIn = options.standIn ? registry.standIn(entry, input, output) : null;
  return standIn === null
    ? { points: 0, standIn: null }
    : { points: standIn.estimate.points, standIn: standIn.id };
}
