/** @module The usage footer appended to answers, and its removal from histories sent back. */
import type { ChatMessage, ContentPart } from "./openai_types.ts";

/** The points of one answer: Poe's real figure, or the `models.yaml` estimate. */
export type FooterPoints =
  | { estimated: false; points: number }
  | { estimated: true; points: number; base: number; tokens: number };

/** Context clipping done on the request, as `lib/clip.ts` reports it. */
export interface FooterClipping {
  dropped: number;
  tokensBefore: number;
  tokensAfter: number;
  /** `tokensBefore` is partly an estimate (a dropped part too large to count): shown "about". */
  approximate?: boolean;
  /** `tokensAfter` is partly an estimate (a kept message beyond the request's counting budget). */
  approximateAfter?: boolean;
}

/** What {@linkcode formatFooter} shows. */
export interface FooterFacts {
  /** Token counts from the answer's `usage` (counted here when Poe sent none), or null. */
  usage: {
    prompt_tokens: number;
    completion_tokens: number;
    total_tokens?: number;
    tokens_estimated?: unknown;
  } | null;
  /** Null when neither the history nor `models.yaml` gives a figure. */
  points: FooterPoints | null;
  /** The balance to show, or null when unknown. */
  balance: number | null;
  /** Milliseconds since the balance was read, shown when it is stale. Default: not shown. */
  balanceAgeMs?: number | null;
  /** `POINTS_PER_MESSAGE_WARN`: a costlier answer gets a warning; 0 turns it off. */
  warnAbove: number;
  /** `MAX_POINTS_PER_MESSAGE`: a costlier answer says so; 0 turns it off. */
  cap: number;
  /** Up to three cheaper models for the warning. */
  cheaper: readonly string[];
  /**
   * The model makes images, video or audio, priced per item: a new chat would not cost less, so
   * the warning names only cheaper models. Default: false.
   */
  media?: boolean;
  /**
   * Most of the cost is the input's, which a new chat would not send again: the warning suggests
   * one. Default: true.
   */
  inputHeavy?: boolean;
  /** Clipping done on this request, when messages were dropped. */
  clipped?: FooterClipping | null;
  /** The answer limit `cap` set, when the answer reached it. Default: none. */
  cutAt?: number | null;
}

const START = "\n\n---\n📊 Tokens";
const int = (n: number) => String(Math.round(n));
/** Built once: `toLocaleString` builds a formatter on every call (about 17 µs). */
const GROUPED = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const grouped = (n: number) => GROUPED.format(Math.round(n));

function age(ms: number): string {
  const minutes = Math.round(ms / 60_000);
  if (minutes < 60) return `${Math.max(1, minutes)} min ago`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `${hours} h ago` : `${Math.round(hours / 24)} days ago`;
}

/** A count to show: whole, or null when Poe's usage had none (or not a number). */
function count(n: unknown): number | null {
  return typeof n === "number" && Number.isFinite(n) ? Math.round(n) : null;
}

/**
 * The tokens line after `📊 Tokens`: total, input and output as far as Poe's usage tells them. A
 * figure it lacks is never printed as `NaN`: such a footer would not be recognized when the client
 * sends it back, and would be billed again on every later turn.
 */
function tokensText(u: FooterFacts["usage"]): string {
  if (!u) return ": n/a";
  const est = u.tokens_estimated ? " (est.)" : "";
  const input = count(u.prompt_tokens);
  let output = count(u.completion_tokens);
  const total = count(u.total_tokens) ??
    (input !== null && output !== null ? input + output : null);
  if (output === null && input !== null && total !== null && total >= input) output = total - input;
  if (total === null) return `${est}: n/a`;
  if (input === null || output === null) return `${est}: ${total}`;
  return `${est}: ${total} (Input: ${input}, Output: ${output})`;
}

/**
 * The footer, starting with a blank line:
 * ```
 *
 * ---
 * 📊 Tokens: 1234 (Input: 1000, Output: 234)     (or `Tokens (est.)`, counted here)
 * 💰 Points: 339            or   💰 Points (est.): 300 (Base: 226, Tokens: 74.0)
 * 🏦 Current balance: 1,234,567 points
 * ```
 * then, when they apply, one line each for clipping, the warning, the cap's answer limit reached
 * and the cap.
 */
export function formatFooter(facts: FooterFacts): string {
  const tokens = tokensText(facts.usage);
  const p = facts.points;
  const points = p === null || !Number.isFinite(p.points)
    ? "💰 Points: n/a"
    : p.estimated
    ? `💰 Points (est.): ${int(p.points)} (Base: ${int(p.base)}, Tokens: ${p.tokens.toFixed(1)})`
    : `💰 Points: ${int(p.points)}`;
  const stale = facts.balanceAgeMs ? ` (as of ${age(facts.balanceAgeMs)})` : "";
  const balance = facts.balance === null ? "unknown" : `${grouped(facts.balance)} points${stale}`;
  const lines = [`${START}${tokens}`, points, `🏦 Current balance: ${balance}`];
  const c = facts.clipped;
  if (c && c.dropped > 0) {
    lines.push(
      `✂️ Context clipped: dropped ${c.dropped} message${c.dropped === 1 ? "" : "s"} (${
        c.approximate ? "about " : ""
      }${grouped(c.tokensBefore)} → ${c.approximateAfter ? "about " : ""}${
        grouped(c.tokensAfter)
      } tokens)`,
    );
  }
  if (p && facts.warnAbove > 0 && p.points > facts.warnAbove) {
    const names = facts.cheaper.slice(0, 3).join(", ");
    // A new chat costs as much when the answer (or a media model's item) is what cost.
    const advice = facts.media || facts.inputHeavy === false
      ? (names ? ` Cheaper models: ${names}.` : "")
      : ` Consider starting a new chat${names ? `, or a cheaper model: ${names}.` : "."}`;
    lines.push(`⚠️ This message cost more than ${grouped(facts.warnAbove)} points.${advice}`);
  }
  if (facts.cutAt && facts.cap > 0) {
    lines.push(
      `⛔ Answer stopped at ${grouped(facts.cutAt)} tokens, as far as MAX_POINTS_PER_MESSAGE (${
        grouped(facts.cap)
      } points) allows.`,
    );
  }
  if (p && facts.cap > 0 && p.points > facts.cap) {
    lines.push(`⛔ This message went over MAX_POINTS_PER_MESSAGE (${grouped(facts.cap)} points).`);
  }
  return lines.join("\n");
}

/**
 * Exactly the lines {@linkcode formatFooter} writes, wherever they are in a text: clients may add
 * to an answer after it (Cline and its forks append "[Response interrupted by a tool use
 * result...]"), trim its blank line, turn its line ends into `\r\n`, or continue the answer right
 * after it, on its last line (a Continue button). The footer goes with the line breaks before it,
 * and with the blank space after it when nothing follows.
 */
const NL = "\\r?\\n";
const COUNT = "(?:-?\\d+|NaN)";
const NAMES = "[^\\s,]+(?:, [^\\s,]+){0,2}";
/** A figure of the Python proxy's footers too: it wrote estimates with one decimal. */
const FIGURE = "-?\\d+(?:\\.\\d+)?";
const FOOTERS = new RegExp(
  // The tokens line is missing from the Python proxy's footers when Poe sent no usage in time.
  `(?:^|(?:${NL}){1,2})---${NL}(?:📊 Tokens(?: \\(est\\.\\))?: ` +
    // NaN: what earlier builds wrote for a usage missing a figure, still in clients' chats.
    `(?:${COUNT}(?: \\(Input: ${COUNT}, Output: ${COUNT}\\))?|n/a|N/A)${NL})?` +
    `💰 (?:Points: (?:${FIGURE}|n/a|N/A)|Points \\(est\\.\\): ${FIGURE} \\(Base: ${FIGURE}, Tokens: ${FIGURE}\\))` +
    `${NL}🏦 Current balance: (?:-?[\\d,]+ points(?: \\(as of \\d+ (?:min|h|days) ago\\))?|unknown)` +
    // "about": a figure partly estimated; footers written before that have none.
    `(?:${NL}✂️ Context clipped: dropped \\d+ messages? \\((?:about )?[\\d,]+ → (?:about )?[\\d,]+ tokens\\))?` +
    `(?:${NL}⚠️ This message cost more than [\\d,]+ points\\.` +
    // Up to three model names (no spaces nor commas): text glued after the line keeps its own.
    `(?: Consider starting a new chat(?:, or a cheaper model: ${NAMES})?\\.| Cheaper models: ${NAMES}\\.)?)?` +
    `(?:${NL}⛔ Answer stopped at [\\d,]+ tokens, as far as MAX_POINTS_PER_MESSAGE \\([\\d,]+ points\\) allows\\.)?` +
    `(?:${NL}⛔ This message went over MAX_POINTS_PER_MESSAGE \\([\\d,]+ points\\)\\.)?` +
    // The Python proxy's warning: a blank line, its title, and its advice a line each.
    `(?:(?:${NL}){1,2}⚠️ High cost detected for this response\\.(?:${NL}- [^\\r\\n]*){0,3})?` +
    // A continuation (SillyTavern's, Open WebUI's Continue) may be glued to its last line.
    "(?:[ \\t\\r\\n]*$|[ \\t]*(?=\\r?\\n)|)",
  "gu",
);

/** `text` without the footers in it, or `text` itself when it has none. */
export function stripFooter(text: string): string {
  // Nearly every message has none: one search, no regular expression.
  if (!text.includes("🏦 Current balance")) return text;
  return text.replace(FOOTERS, "");
}

function stripParts(parts: ContentPart[]): ContentPart[] {
  let out: ContentPart[] | null = null;
  for (let i = parts.length - 1; i >= 0; i--) {
    const part = parts[i];
    if (part.type !== "text" || typeof part.text !== "string") continue;
    const text = stripFooter(part.text);
    if (text === part.text) continue;
    out ??= [...parts];
    if (text === "" && out.length > 1) out.splice(i, 1);
    else out[i] = { ...part, text };
  }
  return out ?? parts;
}

/**
 * Removes the footers this proxy wrote from the messages of a history: exact matches of the
 * footer's lines, in a string content or in text parts. Not only from assistant messages: clients
 * resend answers as user text (Aider's architect hands its answer to the editor model, Continue
 * resends a stored summary). Tool results are the tools' own and left as they are. Nothing else is
 * touched; the same array is returned when nothing changed.
 */
export function stripFooters(messages: ChatMessage[]): ChatMessage[] {
  let out: ChatMessage[] | null = null;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    if (m.role === "tool" || m.role === "function") continue;
    let content = m.content;
    if (typeof content === "string") content = stripFooter(content);
    else if (Array.isArray(content)) content = stripParts(content);
    if (content === m.content) continue;
    out ??= [...messages];
    out[i] = { ...m, content };
  }
  return out ?? messages;
}
