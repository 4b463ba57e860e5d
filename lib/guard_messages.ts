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
 * The cost-cap refusal's text: the estimate and what it counted, the cap, cheaper models, and what
 * the client can change to lower it.
 */
export function capMessage(entry: ModelEntry, figures: CapFigures): string {
  const { points, cap, input, answer, cheaper } = figures;
  const answerPart = answerPartOf(answer);
  const lower = answer.thinking === null ? "max_tokens" : "max_tokens or thinking_budget";
  const media = isMedia(entry);
  // What the estimate counted, and what the client can change to lower it.
  const parts: string[] = [];
  const advice: string[] = [];
  if (!media) {
    parts.push(`${grouped(input)} input tokens`, answerPart);
    advice.push(`Start a new chat or lower ${lower} to send less.`);
  } else {
    if (entry.base !== null) {
      parts.push(`${grouped(entry.base)} points per ${ITEM[entry.modality]}`);
    }
    if (entry.per1kTokens !== null) {
      parts.push(`${grouped(input)} tokens in your newest message`);
      advice.push("A shorter message costs less.");
    }
    if (entry.per1kOutputTokens !== null) {
      parts.push(answerPart);
      advice.push(`A lower ${lower} costs less.`);
    }
  }
  return `⛔ poe-proxy refused this request: ${entry.id} would cost about ${
    grouped(points)
  } points (${parts.join(", ")}), over MAX_POINTS_PER_MESSAGE of ${grouped(cap)} points. ` +
    (cheaper.length ? `Cheaper models: ${cheaper.join(", ")}. ` : "") +
    (advice.length ? `${advice.join(" ")} ` : "") + "Nothing was sent to Poe.";
}
