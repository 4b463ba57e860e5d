/**
 * @module The texts of the guards' refusals: the balance and how it was reckoned, the cutoff and the
 * next grant; the estimate, the cap and what would cost less.
 */
import type { PricedAnswer } from "./answer_limit.ts";
import { isMedia, type ModelEntry } from "./models.ts";
import type { RunningTotal } from "./running_costs.ts";
import type { BalanceSnapshot } from "./usage.ts";

/** Built once: `toLocaleString` builds a formatter on every call (about 17 µs). */
const GROUPED = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const grouped = (n: number) => GROUPED.format(Math.round(n));

/** A grant's time for a person: the UTC minute and how far off it is. */
function when(time: number, now: number): string {
  const date = new Date(time).toISOString().slice(0, 16).replace("T", " ");
  const hours = (time - now) / 3_600_000;
  const rel = hours < 1
    ? "within the hour"
    : hours < 1.5
    ? "in about an hour"
    : hours < 48
    ? `in about ${Math.round(hours)} hours`
    : `in ${Math.round(hours / 24)} days`;
  return `${date} UTC (${rel})`;
}

/** What one answer of a media model is, for the per-item part of a refusal. */
const ITEM: Record<string, string> = { image: "image", video: "video", audio: "audio clip" };

/**
 * The note on requests still running held at a stand-in's price (their model has none in
 * `models.yaml`), or nothing.
 */
function standInsOf(running: RunningTotal): string {
  const n = running.standIns ?? 0;
  if (n === 0) return "";
  const which = n === running.count ? "" : `${n} of them `;
  return ` (${which}held at a stand-in: the dearest priced model of the same modality, for ${
    n === 1 ? "a model" : "models"
  } without a price in models.yaml)`;
}

/** The figures a pause refusal names besides Poe's last reading. */
export interface PauseFigures {
  /** The balance the pause check compared: the reading less `spent` and what `running` holds. */
  balance: number;
  /** Points spent through this proxy since the reading. */
  spent: number;
  /** What requests still running hold. */
  running: RunningTotal;
  /** `POINTS_CUTOFF`. */
  cutoff: number;
  /** Milliseconds since the epoch. */
  now: number;
}

/**
 * The pause refusal's text: the balance and, when it is not Poe's last reading alone, how it was
 * reckoned; the cutoff; the next grant when one is known and still to come.
 */
export function pausedMessage(snap: BalanceSnapshot, figures: PauseFigures): string {
  const { balance, spent, running, cutoff, now } = figures;
  let grant = "";
  if (snap.nextGrant && snap.nextGrant.time > now) {
    const amount = snap.nextGrant.amount === null
      ? "Poe grants points"
      : `Poe grants ${grouped(snap.nextGrant.amount)} points`;
    grant = ` ${amount} next on ${when(snap.nextGrant.time, now)}.`;
  }
  const ageMin = Math.round((now - snap.takenAt) / 60_000);
  const less: string[] = [];
  if (spent > 0) less.push(`less ${grouped(spent)} points spent through this proxy since`);
  if (running.points > 0) {
    less.push(
      `less about ${grouped(running.points)} points for ${running.count} ${
        running.count === 1 ? "request" : "requests"
      } still running${standInsOf(running)}`,
    );
  }
  const asOf = less.length > 0
    ? ` (${grouped(snap.balance)} at Poe's last reading${
      ageMin >= 2 ? `, ${ageMin} minutes ago` : ""
    }, ${less.join(", ")})`
    : ageMin >= 2
    ? ` (as of ${ageMin} minutes ago)`
    : "";
  // Paused by what is still running alone: the answer may change once those are done.
  const wait = snap.balance - spent >= cutoff
    ? " Ask again once those requests are done: their cost decides whether you can go on."
    : "";
  const what = running.points > 0
    ? "your Poe balance, counting requests still running,"
    : "your Poe balance";
  return `⏸️ poe-proxy is paused: ${what} is about ${grouped(balance)} points${asOf}, ` +
    `below the POINTS_CUTOFF of ${grouped(cutoff)} points.${wait}${grant} ` +
    "Nothing was sent to Poe; lower POINTS_CUTOFF to go on spending.";
}

/** The figures a cost-cap refusal names. */
export interface CapFigures {
  /** The estimate, in points. */
  points: number;
  /** `MAX_POINTS_PER_MESSAGE`. */
  cap: number;
  /** The input tokens the estimate priced. */
  input: number;
  /** The answer tokens the estimate priced, and the limit and thinking budget they came from. */
  answer: PricedAnswer;
  /** Cheaper models, by name. */
  cheaper: string[];
  /**
   * The chat holds one message besides system ones: a new chat would send the same. Default:
   * false.
   */
  single?: boolean;
  /**
   * The model's estimate for other input and answer tokens (`ModelRegistry.estimatePoints`), to
   * tell which advice brings the request under the cap.
   */
  price: (input: number, answer: number) => number;
}

/** What the cost cap's estimate counted of the answer, e.g. `up to 4,000 answer tokens`. */
function answerPartOf(answer: PricedAnswer): string {
  const { tokens, limit, thinking } = answer;
  if (thinking === null) {
    return limit === null
      ? `${grouped(tokens)} answer tokens assumed`
      : `up to ${grouped(tokens)} answer tokens`;
  }
  const rest = limit === null
    ? `${grouped(tokens - thinking)} assumed for the answer`
    : `an answer limit of ${grouped(limit)}`;
  return `up to ${grouped(tokens)} answer tokens (a thinking budget of ${
    grouped(thinking)
  } and ${rest})`;
}

/**
 * What the client can change of the answer's length, e.g. `lower max_tokens or thinking_budget`,
 * and the fewest answer tokens that leaves priced; null when nothing it sets lowers the estimate.
 * A limit it did not set is offered only when setting one can lower the estimate: an answer
 * within a model's base (`ANSWER_IN_BASE`) costs nothing more, and the cap assumes one that long.
 */
function answerKnob(
  answer: PricedAnswer,
  price: CapFigures["price"],
): { words: string; least: number } | null {
  const assumed = answer.limit === null ? answer.tokens - (answer.thinking ?? 0) : 0;
  // A limit of 1 token, no thinking: the least the answer can be priced at.
  const limit = answer.limit !== null
    ? "lower max_tokens"
    : price(0, 1) < price(0, assumed)
    ? "set max_tokens"
    : null;
  const least = limit === null ? assumed : 1;
  if (answer.thinking === null) return limit && { words: limit, least };
  const words = limit === null
    ? "lower thinking_budget"
    : limit === "lower max_tokens"
    ? "lower max_tokens or thinking_budget"
    : "set max_tokens or lower thinking_budget";
  return { words, least };
}

/**
 * The advice of a cost-cap refusal: each change the client can make only when it brings the
 * estimate under the cap, both together when neither alone does; when even the model's base price
 * is over the cap, that, as nothing the client sends can help.
 */
function capAdvice(entry: ModelEntry, figures: CapFigures): string {
  const { cap, input, answer, price } = figures;
  const fits = (points: number) => points <= cap;
  if (!fits(price(0, 0))) {
    // A media model's per-item price is named already, among what the estimate counted.
    const base = isMedia(entry) ? "" : ` (${grouped(price(0, 0))} points per message)`;
    return `This model's base price alone${base} is over MAX_POINTS_PER_MESSAGE: raise it or ` +
      "pick a cheaper model.";
  }
  // A text model is priced by the whole chat, an image, video or audio model by the newest message.
  const shorter = isMedia(entry) || figures.single ? "Shorten your message" : "Start a new chat";
  const knob = isMedia(entry) && entry.per1kOutputTokens === null
    ? null
    : answerKnob(answer, price);
  const shorterFits = fits(price(0, answer.tokens));
  const knobFits = knob !== null && fits(price(input, knob.least));
  if (shorterFits && knobFits) return `${shorter} or ${knob.words} to send less.`;
  if (shorterFits) return `${shorter} to send less.`;
  if (knobFits) return `${knob.words[0].toUpperCase()}${knob.words.slice(1)} to ask for less.`;
  if (knob !== null && fits(price(0, knob.least))) {
    return `${shorter} and ${knob.words}: either alone is not enough.`;
  }
  return "";
}

/**
 * The cost-cap refusal's text: the estimate and what it counted, the cap, cheaper models, and what
 * the client can change to bring it under the cap.
 */
export function capMessage(entry: ModelEntry, figures: CapFigures): string {
  const { points, cap, input, answer, cheaper } = figures;
  const answerPart = answerPartOf(answer);
  // What the estimate counted.
  const parts: string[] = [];
  if (!isMedia(entry)) {
    parts.push(`${grouped(input)} input tokens`, answerPart);
  } else {
    if (entry.base !== null) {
      parts.push(`${grouped(entry.base)} points per ${ITEM[entry.modality]}`);
    }
    if (entry.per1kTokens !== null) parts.push(`${grouped(input)} tokens in your newest message`);
    if (entry.per1kOutputTokens !== null) parts.push(answerPart);
  }
  const advice = capAdvice(entry, figures);
  return `⛔ poe-proxy refused this request: ${entry.id} would cost about ${
    grouped(points)
  } points (${parts.join(", ")}), over MAX_POINTS_PER_MESSAGE of ${grouped(cap)} points. ` +
    (cheaper.length ? `Cheaper models: ${cheaper.join(", ")}. ` : "") +
    (advice ? `${advice} ` : "") + "Nothing was sent to Poe.";
}
